"""An error code as pages show it: the code, what it means, and a link to what to do.

``{% load error_codes %}{% error_code record.error_code %}`` on a detail page;
the tables' ErrorCodeColumn builds the same HTML with :func:`error_code_html`.
The code comes from the cloud: untrusted text, always escaped.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from backups.dcs.error_codes import explain

register = template.Library()


def error_code_url(code: str) -> str:
    """The catalogue page with ``code`` highlighted, scrolled to it when we know it."""
    explanation = explain(code)
    fragment = f"#code-{explanation.code}" if explanation else ""
    return f"{reverse('backups:error-codes')}?{urlencode({'code': code})}{fragment}"


def error_code_help(code: str) -> SafeString:
    """A small "?" link to the catalogue, its tooltip the next step when we know the code."""
    explanation = explain(code)
    tooltip = str(explanation.next_step) if explanation else _("Not in our catalogue of error codes")
    return format_html(
        '<a class="error-code__help" href="{}" title="{}" aria-label="{}">?</a>',
        error_code_url(code),
        tooltip,
        _("What %(code)s means and what to do") % {"code": code},
    )


def error_code_html(code: str, *, meaning: str = "") -> SafeString:
    """The code, its meaning (or "not documented") and the help link."""
    explanation = explain(code)
    meaning = meaning or (str(explanation.meaning) if explanation else "")
    if not meaning:
        return format_html(
            '<code class="error-code" title="{}">{}</code> {}',
            _("Error code not documented"),
            code,
            error_code_help(code),
        )
    return format_html(
        '<code class="error-code" title="{}">{}</code> <span class="error-code__meaning">{}</span> {}',
        meaning,
        code,
        meaning,
        error_code_help(code),
    )


@register.simple_tag
def error_code(code: str | None) -> SafeString | str:
    """An error code with its meaning, its next step and the catalogue link; "—" for none."""
    if not code:
        return "—"
    explanation = explain(code)
    html = error_code_html(code)
    if explanation is None:
        return html
    return format_html(
        '{}<p class="error-code__next"><strong>{}</strong> {}</p>',
        html,
        _("What to do:"),
        explanation.next_step,
    )
