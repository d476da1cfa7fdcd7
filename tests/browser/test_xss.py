"""XSS payloads in every API text field, rendered in chromium: no script runs, no CSP violation.

Instances and backup records are made through the factories with a payload in
every text field the API gives us (and in the raw JSON); each page is loaded
in a real browser, logged in through the real form. A payload that ran would
set ``window.__xss`` or open a dialog; the payload must instead be visible as
text. Every CSP violation the console reports fails the test too.
"""

from __future__ import annotations

import pytest

from backups.models import SyncError
from tests.browser.conftest import PASSWORD
from tests.factories import T0, make_record, make_sync_run
from tests.factories import make_instance as make_dcs_instance

PAYLOADS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=1">',
    '<svg onload="window.__xss=1">',
    "javascript:window.__xss=1",
    "{{7*7}}",
]
ALL = " ".join(PAYLOADS)
# For 32-character columns (status, engine): still a whole payload, since
# PostgreSQL refuses a longer value and a cut one would prove nothing.
SHORT = '"><img src=x onerror=__xss=1>'


@pytest.fixture
def operator(django_user_model):
    """The user ``logged_in`` signs in as: here one who may read everything (a
    Viewer's permissions, given directly so the test does not depend on how the
    roles are set up), since support staff are who opens pasted links."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="support", password=PASSWORD)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="backups", codename__startswith="view_")
    )
    return user


@pytest.fixture
def hostile(db):
    instance = make_dcs_instance(
        name=ALL,
        engine=PAYLOADS[0],
        status=SHORT,
        spec_code=PAYLOADS[2],
        region=PAYLOADS[1][:60],
        engine_version=PAYLOADS[4],
        domain_name=PAYLOADS[3],
        tags={PAYLOADS[0]: PAYLOADS[1], "owner": PAYLOADS[2]},
        az_codes=[PAYLOADS[1]],
        raw={"name": ALL, "description": PAYLOADS[2], "nested": {"x": PAYLOADS[1]}},
    )
    records = []
    for n, status in enumerate(["failed", "succeed", PAYLOADS[0][:32], "backuping"]):
        records.append(
            make_record(
                instance,
                backup_name=ALL[:255],
                remark=ALL,
                error_code=PAYLOADS[1][:64],
                period=ALL[:255],
                status=status,
                backup_type=PAYLOADS[2][:32],
                backup_format=PAYLOADS[0][:32],
                created_at=T0.replace(year=2026) if n else T0,
                raw={"remark": ALL, "error_code": PAYLOADS[1], "tags": [PAYLOADS[2]]},
            )
        )
    run = make_sync_run(scope=ALL[:255], reason=ALL, outcome="failed")
    SyncError.objects.create(
        run=run,
        instance=instance,
        scope=ALL[:255],
        error=PAYLOADS[2][:64],
        error_code=PAYLOADS[1][:64],
        error_msg=ALL,
        request_id=PAYLOADS[0][:128],
        occurred_at=T0,
    )
    return instance, records, run


def test_it_runs_no_script_from_api_text(logged_in, live_server, hostile):
    instance, records, run = hostile
    page = logged_in
    violations: list[str] = []
    dialogs: list[str] = []
    page.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    urls = [
        "/",
        "/?window=7d",
        "/backups/",
        f"/backups/?q={PAYLOADS[0]}",
        "/instances/",
        f"/instances/{instance.instance_id}/",
        f"/instances/{instance.instance_id}/?window=90d",
        *(f"/backups/{record.backup_id}/" for record in records),
        "/sync/",
        f"/sync/{run.pk}/",
    ]
    for url in urls:
        page.goto(f"{live_server.url}{url}")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("typeof window.__xss") == "undefined", url
        text = page.inner_text("main")
        if url not in ("/", "/?window=7d", "/sync/"):
            # The payload is shown as the text it is (the overview and the sync
            # list may not name this instance or scope at all).
            assert "window.__xss=1" in text, url
    assert not dialogs
    assert not violations, violations


def test_it_reports_no_csp_violation_on_the_main_pages(logged_in, live_server, db):
    instance = make_dcs_instance()
    record = make_record(instance)
    run = make_sync_run()
    page = logged_in
    violations: list[str] = []
    page.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    for url in (
        "/",
        "/backups/",
        "/instances/",
        f"/instances/{instance.instance_id}/",
        f"/backups/{record.backup_id}/",
        "/sync/",
        f"/sync/{run.pk}/",
        "/accounts/login/",
    ):
        response = page.goto(f"{live_server.url}{url}")
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        page.wait_for_load_state("networkidle")
    assert not violations, violations
