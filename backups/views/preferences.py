"""The viewer's preferences: time zone and language, each a small form in the header.

Both only set a cookie, so they are open before login too (the login page has
the language switch). Theme is not here: it is a browser-side choice kept in
localStorage by ``static/js/dashboard.js``.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import i18n

from backups.middleware import TIMEZONE_COOKIE, TIMEZONE_COOKIE_MAX_AGE, clean_timezone_name


def safe_next_url(request: HttpRequest) -> str:
    """Where to go back to: ``next``, else the referring page, if on this site; else home."""
    for candidate in (
        request.POST.get("next") or request.GET.get("next"),
        request.headers.get("referer"),
    ):
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
    return reverse("backups:home")


@login_not_required
def set_timezone(request: HttpRequest) -> HttpResponse:
    """Remember the zone times are shown in, then go back to the page.

    Like Django's ``set_language``, a GET changes nothing and just goes back:
    only a POST (with its CSRF token) may change how every page looks. A zone
    the server does not know becomes UTC, silently.
    """
    response = HttpResponseRedirect(safe_next_url(request))
    if request.method == "POST":
        response.set_cookie(
            TIMEZONE_COOKIE,
            clean_timezone_name(request.POST.get("tz")),
            max_age=TIMEZONE_COOKIE_MAX_AGE,
            samesite="Lax",
            httponly=True,
            secure=request.is_secure(),
        )
    return response


@login_not_required
def set_language(request: HttpRequest) -> HttpResponse:
    """Django's ``set_language``, reachable from the login page.

    ``/i18n/setlang/`` is behind LoginRequiredMiddleware like every other URL,
    so a visitor who has not signed in yet could not switch language there.
    """
    return i18n.set_language(request)
