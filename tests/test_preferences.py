"""The page frame: the viewer's zone (middleware and form), theme, layout, error pages."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.views.defaults import server_error

from backups import urls as backup_urls
from backups.middleware import (
    TIMEZONE_COOKIE,
    ViewerTimezoneMiddleware,
    clean_timezone_name,
    common_timezones,
    selectable_timezones,
)
from backups.models import RpoPolicy, SyncRun
from tests.factories import T0, make_instance, make_record

SET_TZ_URL = "/preferences/timezone/"
MIDDLEWARE = "backups.middleware.ViewerTimezoneMiddleware"
STATIC = Path(django_settings.BASE_DIR) / "static"


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The backup list caches its row count for a minute; a count left over
    # from another test would hide this test's rows.
    cache.clear()


def zone_seen_by_the_view(cookie: str | None) -> str:
    """The zone a view runs in, for a request carrying ``cookie``."""
    request = RequestFactory().get("/")
    if cookie is not None:
        request.COOKIES[TIMEZONE_COOKIE] = cookie
    seen = []

    def view(request):
        seen.append(timezone.get_current_timezone_name())
        return None

    ViewerTimezoneMiddleware(view)(request)
    return seen[0]


# --- The middleware --------------------------------------------------------


def test_it_activates_the_zone_of_the_cookie():
    assert zone_seen_by_the_view("Asia/Shanghai") == "Asia/Shanghai"
    assert zone_seen_by_the_view("America/New_York") == "America/New_York"


def test_it_uses_utc_without_a_cookie():
    assert zone_seen_by_the_view(None) == "UTC"


@pytest.mark.parametrize(
    "cookie",
    ["", "Mars/Olympus_Mons", "asia/shanghai", "../../../etc/passwd", "Factory", "localtime", "UTC\x00"],
)
def test_it_falls_back_to_utc_for_a_bad_cookie(cookie):
    assert zone_seen_by_the_view(cookie) == "UTC"


def test_it_leaves_utc_active_after_the_request():
    zone_seen_by_the_view("Asia/Shanghai")

    assert timezone.get_current_timezone_name() == "UTC"


@pytest.mark.django_db
def test_it_queries_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        zone_seen_by_the_view("Asia/Shanghai")


@pytest.mark.django_db
def test_it_adds_no_query_to_a_page(settings):
    make_record()
    make_record()
    user = get_user_model().objects.create_user("dba", password="x")

    def queries_of_the_list() -> int:
        client = Client()
        client.force_login(user)
        client.cookies[TIMEZONE_COOKIE] = "Asia/Shanghai"
        cache.clear()  # the list caches its count: both requests must count
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/backups/").status_code == 200
        return len(queries)

    assert MIDDLEWARE in settings.MIDDLEWARE
    with_it = queries_of_the_list()
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    without_it = queries_of_the_list()

    assert with_it == without_it


def test_it_offers_every_zone_with_common_ones_first():
    zones = selectable_timezones()

    assert len(zones) > 400
    assert {"UTC", "Asia/Shanghai", "America/New_York", "Europe/London"} <= set(zones)
    assert "Factory" not in zones and "localtime" not in zones
    assert common_timezones()[:4] == ("UTC", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Singapore")
    assert clean_timezone_name("Asia/Singapore") == "Asia/Singapore"


# --- The time zone form ----------------------------------------------------


@pytest.mark.django_db
def test_it_remembers_the_zone_in_a_cookie_and_goes_back(admin_client):
    response = admin_client.post(
        SET_TZ_URL, {"tz": "Asia/Shanghai", "next": "/backups/?page=2&sort=-created_at"}
    )

    assert response.status_code == 302
    assert response.url == "/backups/?page=2&sort=-created_at"
    cookie = response.cookies[TIMEZONE_COOKIE]
    assert cookie.value == "Asia/Shanghai"
    assert cookie["max-age"] == 365 * 24 * 60 * 60
    assert cookie["samesite"] == "Lax"
    assert cookie["httponly"]
    assert admin_client.cookies[TIMEZONE_COOKIE].value == "Asia/Shanghai"


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["Nowhere/Special", "", "<script>", "x" * 5000])
def test_it_stores_utc_for_a_zone_it_does_not_know(admin_client, zone):
    response = admin_client.post(SET_TZ_URL, {"tz": zone, "next": "/backups/"})

    assert response.status_code == 302
    assert response.cookies[TIMEZONE_COOKIE].value == "UTC"


@pytest.mark.django_db
def test_it_switches_back_to_utc(admin_client):
    admin_client.cookies[TIMEZONE_COOKIE] = "Asia/Shanghai"

    response = admin_client.post(SET_TZ_URL, {"tz": "UTC", "next": "/backups/"})

    assert response.cookies[TIMEZONE_COOKIE].value == "UTC"
    assert "Times are shown in UTC." in admin_client.get("/backups/").text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example/backups/",
        "javascript:alert(1)",
        "http://testserver.evil/",
        "",
    ],
)
def test_it_does_not_redirect_off_site(admin_client, next_url):
    response = admin_client.post(SET_TZ_URL, {"tz": "Asia/Shanghai", "next": next_url})

    assert response.status_code == 302
    assert response.url == reverse("backups:home")
    assert response.cookies[TIMEZONE_COOKIE].value == "Asia/Shanghai"


@pytest.mark.django_db
def test_it_goes_back_to_the_referring_page_without_next(admin_client):
    response = admin_client.post(
        SET_TZ_URL, {"tz": "Asia/Shanghai"}, headers={"referer": "http://testserver/instances/"}
    )

    assert response.url == "http://testserver/instances/"


@pytest.mark.django_db
def test_it_changes_nothing_on_get(admin_client):
    response = admin_client.get(SET_TZ_URL, {"tz": "Asia/Shanghai", "next": "/backups/"})

    assert response.status_code == 302
    assert response.url == "/backups/"
    assert TIMEZONE_COOKIE not in response.cookies


@pytest.mark.django_db
def test_it_requires_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("dba", password="x"))

    refused = client.post(SET_TZ_URL, {"tz": "Asia/Shanghai", "next": "/backups/"})
    page = client.get("/backups/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    accepted = client.post(
        SET_TZ_URL, {"tz": "Asia/Shanghai", "next": "/backups/", "csrfmiddlewaretoken": token}
    )

    assert refused.status_code == 403
    assert TIMEZONE_COOKIE not in refused.cookies
    assert accepted.status_code == 302
    assert accepted.cookies[TIMEZONE_COOKIE].value == "Asia/Shanghai"


# --- The header ------------------------------------------------------------


@pytest.mark.django_db
def test_it_has_a_labelled_time_zone_selector_in_the_header(admin_client):
    admin_client.cookies[TIMEZONE_COOKIE] = "Asia/Shanghai"

    html = admin_client.get("/backups/").text
    form = html.split(f'action="{SET_TZ_URL}"', 1)[1].split("</form>", 1)[0]

    assert 'name="csrfmiddlewaretoken"' in form
    assert '<input type="hidden" name="next" value="/backups/">' in form
    assert '<label class="prefs__label" for="pref-timezone">' in form
    assert '<select id="pref-timezone" name="tz"' in form
    assert "<option selected>Asia/Shanghai</option>" in form
    assert form.count(" selected") == 1
    assert form.count("<option") == len(common_timezones()) + len(selectable_timezones())
    assert "data-autosubmit" in html.split(f'action="{SET_TZ_URL}"', 1)[1][:40]
    assert "Show in UTC" in html  # the one-click way back


@pytest.mark.django_db
def test_it_selects_a_zone_outside_the_common_ones(admin_client):
    admin_client.cookies[TIMEZONE_COOKIE] = "Pacific/Chatham"

    html = admin_client.get("/backups/").text

    assert html.count("<option selected>") == 1
    assert "<option selected>Pacific/Chatham</option>" in html


@pytest.mark.django_db
def test_it_offers_no_utc_button_when_already_in_utc(admin_client):
    html = admin_client.get("/backups/").text

    assert "Show in UTC" not in html
    assert "<option selected>UTC</option>" in html


@pytest.mark.django_db
def test_it_has_the_theme_switch(admin_client):
    html = admin_client.get("/backups/").text
    switch = re.search(
        r"<fieldset class=\"theme-switch\" data-theme-switch hidden>.*?</fieldset>", html, re.S
    )

    assert switch, "the theme switch is missing"
    assert '<legend class="visually-hidden">Theme</legend>' in switch[0]
    values = re.findall(
        r'<input class="theme-switch__input visually-hidden" type="radio" name="theme" value="(\w+)"',
        switch[0],
    )
    assert values == ["light", "dark", "system"]


@pytest.mark.django_db
def test_it_loads_the_shared_script_first_and_synchronously(admin_client):
    html = admin_client.get("/backups/").text
    head = html.split("</head>", 1)[0]
    script = re.search(r'<script src="/static/js/dashboard\.js"></script>', head)

    assert script, "dashboard.js must be in <head>, without defer or async"
    assert head.index("dashboard.js") < head.index("dashboard.css")


@pytest.mark.django_db
def test_it_has_a_skip_link_landmarks_and_a_live_region(admin_client):
    html = admin_client.get("/backups/").text

    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html
    assert '<header class="site-header">' in html
    assert '<footer class="site-footer">' in html
    assert 'id="live-announcer" class="visually-hidden" role="status" aria-live="polite"' in html
    assert 'data-copied="Copied"' in html


def test_it_ships_the_shared_script():
    script = (STATIC / "js" / "dashboard.js").read_text()

    for needed in (
        "data-theme",
        "localStorage",
        "data-copy-text",
        "navigator.clipboard",
        "live-announcer",
        "data-autosubmit",
    ):
        assert needed in script
    assert "innerHTML" not in script  # nothing it inserts is parsed as HTML


# --- No inline script or style anywhere ---------------------------------------

INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I)
INLINE_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)


def assert_no_inline_code(html: str, where: str) -> None:
    assert not INLINE_SCRIPT.search(html), f"inline <script> on {where}"
    assert "<style" not in html.lower(), f"<style> block on {where}"
    assert not INLINE_STYLE.search(html), f"style= attribute on {where}"
    assert not INLINE_HANDLER.search(html), f"inline event handler on {where}"


def page_urls(record, run, policy=None) -> list[str]:
    """Every page of the app, from its URL patterns, so a new page is checked too.

    ``pk`` is the sync run's, or the RPO policy's on the policy pages."""
    known = {"instance_id": record.instance.instance_id, "backup_id": record.backup_id, "pk": run.pk}
    urls = []
    for pattern in backup_urls.urlpatterns:
        if not isinstance(pattern, URLPattern) or str(pattern.pattern).startswith("preferences/"):
            continue
        pk = policy.pk if policy is not None and pattern.name.startswith("rpo-") else run.pk
        kwargs = {name: {**known, "pk": pk}.get(name, "x") for name in pattern.pattern.converters}
        urls.append(reverse(f"backups:{pattern.name}", kwargs=kwargs))
    return sorted(set(urls))


@pytest.mark.django_db
def test_it_renders_no_inline_script_or_style_on_any_page(admin_client, client):
    instance = make_instance()
    running = make_record(instance, status="backuping", progress=40)
    make_record(instance, status="failed", error_code="dcs.08.0002")
    run = SyncRun.objects.create(scope=SyncRun.FLEET_SCOPE, started_at=T0)
    policy = RpoPolicy.objects.create(scope="region", region=instance.region, max_age=timedelta(hours=8))
    admin_client.cookies[TIMEZONE_COOKIE] = "Asia/Shanghai"
    urls = page_urls(running, run, policy)
    assert "/backups/" in urls and f"/instances/{instance.instance_id}/" in urls

    pages = 0
    for url in urls:
        response = admin_client.get(url)
        # A POST-only action answers a GET with 405 or a redirect, not a page.
        assert response.status_code in (200, 302, 405), url
        if response.status_code == 200:
            pages += 1
            assert_no_inline_code(response.text, url)
            partial = admin_client.get(url, headers={"HX-Request": "true"})
            assert_no_inline_code(partial.text, f"{url} (htmx)")
    assert pages >= 5

    assert_no_inline_code(client.get("/accounts/login/").text, "the login page")
    assert_no_inline_code(admin_client.get("/no-such-page/").text, "the 404 page")
    assert_no_inline_code(server_error(RequestFactory().get("/")).content.decode(), "the 500 page")


# --- Error pages -------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_the_404_page_in_the_frame(admin_client):
    response = admin_client.get("/no-such-page/")

    assert response.status_code == 404
    assert "Page not found" in response.text
    assert '<header class="site-header">' in response.text
    assert "dashboard.js" in response.text


@pytest.mark.django_db
def test_it_renders_the_500_page_without_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = server_error(RequestFactory().get("/"))

    html = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in html
    assert '<script src="/static/js/dashboard.js"></script>' in html
    assert '<main id="main"' in html


# --- The stylesheet ------------------------------------------------------------

CSS = (STATIC / "css" / "dashboard.css").read_text()


def declarations(selector: str) -> dict[str, str]:
    start = CSS.index(selector + " {")
    body = CSS[start : CSS.index("}", start)]
    return dict(re.findall(r"--([\w-]+):\s*([^;]+);", body))


LIGHT = declarations(":root")
DARK_BY_SYSTEM = declarations(':root:not([data-theme="light"])')
DARK_BY_CHOICE = declarations(':root[data-theme="dark"]')
DARK = {**LIGHT, **DARK_BY_CHOICE}


def test_it_has_one_dark_palette_for_the_system_and_the_switch():
    assert DARK_BY_SYSTEM == DARK_BY_CHOICE
    assert "@media screen and (prefers-color-scheme: dark)" in CSS


def luminance(color: str) -> float:
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


BADGES = ("green", "red", "cyan", "blue", "orange", "gray", "indigo", "purple", "teal")
TEXT_PAIRS = [
    *[
        (fg, bg)
        for fg in ("text", "muted", "link")
        for bg in ("bg", "surface", "surface-2", "row-hover", "row-gone")
    ],
    ("header-text", "header-bg"),
    ("header-muted", "header-bg"),
    ("header-text", "header-control-bg"),
    ("header-muted", "header-control-bg"),
    ("header-bg", "header-text"),  # the picked theme option
    ("primary-text", "primary-bg"),
    ("demo-text", "demo-bg"),
    ("error-text", "error-bg"),
    ("info-text", "info-bg"),
    *[(f"badge-{c}-fg", f"badge-{c}-bg") for c in BADGES],
]


@pytest.mark.parametrize("palette", ["light", "dark"])
@pytest.mark.parametrize(("fg", "bg"), TEXT_PAIRS)
def test_it_keeps_text_contrast_above_4_5(palette, fg, bg):
    colors = LIGHT if palette == "light" else DARK

    assert contrast(colors[fg], colors[bg]) >= 4.5, f"{fg} on {bg} in the {palette} theme"


def test_it_prints_without_controls_and_with_the_light_palette():
    printed = CSS[CSS.index("@media print") :]

    for hidden in (".prefs", ".site-nav", ".site-user", ".live-note", ".skip-link"):
        assert hidden in printed.split("display: none")[0]
    assert "color-scheme: light" in printed
    assert '@media screen {\n  :root[data-theme="dark"]' in CSS  # dark never reaches paper


def test_it_uses_a_larger_font_on_wall_screens():
    assert re.search(r"@media \(min-width: 2000px\) \{\s*html \{ font-size: 1[89]px; \}", CSS)


def test_it_lets_hidden_win_over_display():
    assert re.search(r"\[hidden\] \{\s*display: none !important;", CSS)
