"""The audit log: each action writes one event; django-axes locks out and cools off."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from backups.models import AuditEvent

LOGIN_URL = "/accounts/login/"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def dba(django_user_model):
    return django_user_model.objects.create_user("dba", password=PASSWORD)


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


@pytest.mark.django_db
def test_it_records_a_sign_in_and_a_sign_out(client, dba):
    client.post(LOGIN_URL, {"username": "dba", "password": PASSWORD})
    client.post("/accounts/logout/")

    login, logout = AuditEvent.objects.filter(action__in=["login", "logout"]).order_by("id")
    assert (login.action, login.user, login.username, login.ip) == ("login", dba, "dba", "127.0.0.1")
    assert logout.action == "logout" and logout.username == "dba"


@pytest.mark.django_db
def test_it_records_a_failed_sign_in_without_the_password(client, dba):
    client.post(LOGIN_URL, {"username": "dba", "password": "wrong-secret-guess"})

    event = AuditEvent.objects.get(action="login_failed")
    assert event.username == "dba" and event.user is None
    assert "wrong-secret-guess" not in str(event.detail)


@pytest.mark.django_db
def test_it_records_permission_and_group_changes(dba):
    before = AuditEvent.objects.count()

    dba.groups.add(Group.objects.get(name="Operator"))
    dba.user_permissions.add(Permission.objects.get(codename="trigger_sync"))
    Group.objects.get(name="Viewer").permissions.remove(Permission.objects.get(codename="view_synclease"))

    events = list(AuditEvent.objects.filter(action="permission_changed").order_by("id"))[-3:]
    assert AuditEvent.objects.count() == before + 3
    assert events[0].detail == {
        "relation": "groups",
        "change": "add",
        "of": "user:dba",
        "objects": ["Operator"],
    }
    assert events[1].detail["objects"] == ["backups.trigger_sync"]
    assert events[2].detail["change"] == "remove" and events[2].detail["of"] == "group:Viewer"


@pytest.mark.django_db
def test_it_records_an_export_with_its_parameters(admin_client, admin_user):
    admin_client.get("/backups/", {"_export": "csv", "status": "failed", "password": "x"})

    event = AuditEvent.objects.get(action="export")
    assert event.user == admin_user
    assert event.detail == {"format": "csv", "params": {"_export": "csv", "status": "failed"}}


@pytest.mark.django_db
def test_an_export_asked_with_a_nul_in_its_parameters_is_recorded_and_served(admin_client):
    # PostgreSQL's jsonb refuses U+0000; the failed audit write used to leave the
    # request's transaction broken, so the export itself failed after it.
    response = admin_client.get("/backups/", {"_export": "json", "remark\x00": "a\x00b"})

    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"[")
    event = AuditEvent.objects.get(action="export")
    assert event.detail["params"] == {"_export": "json", "remark\ufffd": "a\ufffdb"}


@pytest.mark.django_db
def test_it_records_a_sync_trigger(admin_client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    admin_client.post("/sync/now/")

    event = AuditEvent.objects.get(action="sync_triggered")
    assert event.username == "admin" and event.path == "/sync/now/"


@pytest.mark.django_db
def test_it_shows_and_filters_the_log_for_admins(admin_client, dba):
    AuditEvent.objects.create(action="login_failed", username="mallory<script>")
    old = AuditEvent.objects.create(action="login", username="dba")
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=3))

    all_ = admin_client.get("/audit/").text
    failed = admin_client.get("/audit/", {"action": "login_failed"}).text
    recent = admin_client.get("/audit/", {"user": "dba", "since": "24h"}).text
    bad = admin_client.get("/audit/", {"action": "nope", "since": "garbage", "page": "x"})

    assert "mallory&lt;script&gt;" in all_ and "mallory<script>" not in all_
    assert "Sign-in failed" in failed and ">dba<" not in failed
    assert "mallory" not in recent
    assert bad.status_code == 200


@pytest.mark.django_db
def test_it_keeps_the_log_page_within_its_query_budget(admin_client, django_assert_max_num_queries):
    for n in range(30):
        AuditEvent.objects.create(action="login", username=f"user{n}")

    with django_assert_max_num_queries(5):
        assert admin_client.get("/audit/").status_code == 200


# --- django-axes ------------------------------------------------------------------


@pytest.mark.django_db
def test_it_locks_out_after_the_failure_limit_then_cools_off(client, dba, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post(LOGIN_URL, {"username": "dba", "password": "wrong"})

    locked = client.post(LOGIN_URL, {"username": "dba", "password": PASSWORD})

    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert "_auth_user_id" not in client.session
    assert "lockout" in actions()
    # After the cool-off the right password works again.
    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert client.post(LOGIN_URL, {"username": "dba", "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_it_forgets_failures_after_a_success(client, dba, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        client.post(LOGIN_URL, {"username": "dba", "password": "wrong"})
    assert client.post(LOGIN_URL, {"username": "dba", "password": PASSWORD}).status_code == 302
    client.post("/accounts/logout/")

    for _ in range(2):
        client.post(LOGIN_URL, {"username": "dba", "password": "wrong"})

    assert client.post(LOGIN_URL, {"username": "dba", "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_it_locks_out_one_username_from_one_address_only(client, dba, django_user_model, settings):
    settings.AXES_FAILURE_LIMIT = 2
    django_user_model.objects.create_user("other", password=PASSWORD)
    for _ in range(2):
        client.post(LOGIN_URL, {"username": "dba", "password": "wrong"})

    assert client.post(LOGIN_URL, {"username": "other", "password": PASSWORD}).status_code == 302
    elsewhere = Client(REMOTE_ADDR="10.0.0.9")
    assert elsewhere.post(LOGIN_URL, {"username": "dba", "password": PASSWORD}).status_code == 302
