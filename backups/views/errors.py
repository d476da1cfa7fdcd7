"""The error code catalogue (``/errors/``): what every DCS and gateway code means, and what to do.

``?code=X`` highlights one code; a code we do not know is quoted back as
received (escaped), with a note that it is not in the catalogue. No query
beyond the session and the user: the catalogue is code, not data.
"""

from __future__ import annotations

from django.views.generic import TemplateView

from backups.dcs.error_codes import explain, explanations_by_family

# A code is short; a longer value is a paste gone wrong.
MAX_CODE_LENGTH = 64


class ErrorCodesView(TemplateView):
    template_name = "backups/error_codes.html"

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        asked = self.request.GET.get("code", "").strip()[:MAX_CODE_LENGTH]
        found = explain(asked) if asked else None
        context.update(
            asked=asked,
            found=found,
            groups=explanations_by_family(),
        )
        return context
