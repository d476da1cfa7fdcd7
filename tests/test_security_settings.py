"""Production settings, security headers, the demo banner, and POST-only state changes."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from backups.csp import build_policy
from tests.conftest import manage_py
from tests.factories import make_instance, make_record, make_sync_run

SETTINGS = "from django.conf import settings as s"
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _manage(args: list[str], env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DASHBOARD_"))}
    return manage_py(
        *args, env={**base, "DATABASE_URL": "", "REDIS_URL": "", "DASHBOARD_DATA_DIR": str(tmp_path), **env}
    )


def _production(**extra) -> dict:
    return {
        "DASHBOARD_PRODUCTION": "true",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "dcs.example.com",
        **extra,
    }


def test_it_passes_the_deploy_check_with_zero_warnings_in_production(tmp_path):
    done = _manage(["check", "--deploy", "--fail-level", "WARNING"], _production(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no issues (0 silenced)" in done.stdout


def test_it_passes_behind_a_proxy_that_redirects(tmp_path):
    env = _production(
        DJANGO_SECURE_SSL_REDIRECT="false", DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https"
    )
    done = _manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    printed = _manage(
        [
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT)",
        ],
        env,
        tmp_path,
    )
    assert printed.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https') False"


def test_it_turns_on_https_only_settings_in_production(tmp_path):
    code = (
        f"{SETTINGS}; print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SECURE_HSTS_PRELOAD, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    )
    assert _manage(["shell", "--no-imports", "-c", code], _production(), tmp_path).stdout.split() == [
        "31536000",
        "True",
        "True",
        "True",
        "True",
        "True",
    ]
    # The embedded mode is plain HTTP on loopback: none of it.
    assert (
        _manage(["shell", "--no-imports", "-c", code], {}, tmp_path).stdout.split() == ["0"] + ["False"] * 5
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        ({"DJANGO_SECRET_KEY": "short"}, "at least 50 characters"),
        ({"DJANGO_SECRET_KEY": "a" * 60}, "at least 50 characters"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(50)}, "at least 50 characters"),
        ({"DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS is not set"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off"),
        ({"DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}, "DJANGO_SECURE_PROXY_SSL_HEADER must be"),
    ],
)
def test_it_refuses_to_start_production_without_its_own_settings(tmp_path, env, message):
    done = _manage(["check"], _production(**env), tmp_path)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_it_refuses_the_generated_key_in_production(tmp_path):
    assert _manage(["check"], {}, tmp_path).returncode == 0  # the embedded mode writes its key
    generated = (tmp_path / "secret_key").read_text().strip()
    done = _manage(["check"], _production(DJANGO_SECRET_KEY=generated), tmp_path)
    assert "generated key" in done.stderr


def test_it_refuses_a_policy_that_smuggles_a_directive():
    with pytest.raises(Exception, match="bad token"):
        build_policy({"script-src": ["'self'; script-src *"]})


# --- Headers on every response ---------------------------------------------------


@pytest.fixture
def pages(db):
    instance = make_instance()
    record = make_record(instance)
    run = make_sync_run()
    return [
        "/",
        "/backups/",
        "/backups/?_export=csv",
        "/backups/?_export=json",
        "/instances/",
        f"/instances/{instance.instance_id}/",
        f"/backups/{record.backup_id}/",
        "/sync/",
        f"/sync/{run.pk}/",
        "/admin/",
        "/admin/backups/backuprecord/",
        "/no-such-page/",
        "/static/js/dashboard.js",
    ]


def _assert_security_headers(response, *, static=False):
    assert response["Content-Security-Policy"] == POLICY
    assert response["X-Content-Type-Options"] == "nosniff"
    if static:
        # WhiteNoise answers before the clickjacking middleware; a script or
        # stylesheet cannot be framed anyway.
        return
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_it_sends_the_security_headers_on_every_page(admin_client, pages):
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code in (200, 404), url
        _assert_security_headers(response, static=url.startswith("/static/"))


def test_it_sends_the_security_headers_before_login_too(client, db):
    for url in ("/accounts/login/", "/backups/"):
        _assert_security_headers(client.get(url))


def test_it_has_no_inline_script_or_style_in_any_page(admin_client, pages):
    for url in pages:
        if "_export" in url or url.startswith("/static/"):
            continue
        body = admin_client.get(url).content.decode()
        assert " style=" not in body, url
        for tag in body.split("<script")[1:]:
            assert tag.lstrip().startswith("src=") or " src=" in tag.split(">")[0], (url, tag[:80])
            assert tag.split(">", 1)[1].lstrip().startswith("</script"), (url, tag[:80])


@pytest.mark.parametrize("url", ["/accounts/login/", "/", "/backups/", "/instances/", "/sync/"])
def test_it_shows_the_demo_banner_on_every_page(client, admin_client, db, settings, url):
    settings.DCS_DEMO = True
    page = (client if url.startswith("/accounts/") else admin_client).get(url)
    assert "Demo mode" in page.content.decode()
    settings.DCS_DEMO = False
    page = (client if url.startswith("/accounts/") else admin_client).get(url)
    assert "Demo mode" not in page.content.decode()


# --- State changes: POST only, with CSRF -------------------------------------------


@pytest.fixture
def instance(db):
    return make_instance()


def _state_changing(instance) -> list[str]:
    return [
        "/sync/now/",
        f"/instances/{instance.instance_id}/sync/",
        "/preferences/timezone/",
        "/preferences/language/",
        "/i18n/setlang/",
        "/accounts/logout/",
    ]


def test_it_changes_nothing_on_get(admin_client, instance):
    from backups.models import SyncRun

    for url in _state_changing(instance):
        response = admin_client.get(url, {"tz": "Asia/Shanghai", "language": "zh-hans"})
        assert response.status_code in (302, 405), url
        assert not response.cookies, url  # no time zone, no language, no new session
    assert not SyncRun.objects.exists()
    assert admin_client.get("/backups/").wsgi_request.user.is_authenticated  # still logged in


def test_it_refuses_state_changes_without_a_csrf_token(admin_user, instance):
    from backups.models import SyncRun

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    for url in _state_changing(instance):
        response = client.post(url, {"tz": "Asia/Shanghai", "language": "zh-hans"})
        assert response.status_code == 403, url
    assert not SyncRun.objects.exists()
    anonymous = Client(enforce_csrf_checks=True)
    assert (
        anonymous.post("/accounts/login/", {"username": "admin", "password": "password"}).status_code == 403
    )
