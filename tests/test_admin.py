"""The Django admin over what the syncs keep: it shows, filters and searches; it never adds or changes."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from backups.models import (
    BackupRecord,
    BackupStatusChange,
    DcsInstance,
    SyncError,
    SyncLease,
    SyncRun,
    SyncRunItem,
    WorkerHeartbeat,
)
from tests.factories import T0, make_instance, make_record, make_status_change, make_sync_run

MODELS = (
    DcsInstance,
    BackupRecord,
    BackupStatusChange,
    SyncRun,
    SyncRunItem,
    SyncError,
    SyncLease,
    WorkerHeartbeat,
)
# Written by the sync alone: the next sync would bring a deleted row back.
UNDELETABLE = (DcsInstance, BackupRecord, BackupStatusChange, SyncRun, SyncRunItem, SyncError)


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def rows() -> dict:
    instance = make_instance(
        name="orders-cache", raw={"name": "orders-cache", "secret_marker": "raw-json-here"}
    )
    record = make_record(instance, error_code="dcs.08.0002", raw={"secret_marker": "raw-json-here"})
    run = make_sync_run(
        outcome="partial", errors=[{"scope": "instance x", "message": "HTTP 500", "error_code": "DCS.5000"}]
    )
    return {
        DcsInstance: instance,
        BackupRecord: record,
        BackupStatusChange: make_status_change(record),
        SyncRun: run,
        SyncRunItem: SyncRunItem.objects.create(run=run, instance=instance, position=0),
        SyncError: SyncError.objects.get(run=run),
        SyncLease: SyncLease.objects.create(
            name="sync:fleet", holder="run-1", acquired_at=T0, renewed_at=T0, expires_at=T0
        ),
        WorkerHeartbeat: WorkerHeartbeat.objects.create(
            hostname="celery@worker-1", started_at=T0, last_seen=T0
        ),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_it_lists_and_shows_every_model_to_a_superuser(admin_client, rows, model):
    listing = admin_client.get(admin_url(model, "changelist"))
    page = admin_client.get(admin_url(model, "change", rows[model].pk))

    assert listing.status_code == 200
    assert page.status_code == 200
    # Shown, not editable: no save button.
    assert 'name="_save"' not in page.text


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_it_adds_nothing(admin_client, model):
    assert admin_client.get(admin_url(model, "add")).status_code == 403


@pytest.mark.django_db
def test_it_changes_nothing(admin_client, rows):
    instance = rows[DcsInstance]

    response = admin_client.post(admin_url(DcsInstance, "change", instance.pk), {"name": "renamed"})

    assert response.status_code == 403
    instance.refresh_from_db()
    assert instance.name == "orders-cache"


@pytest.mark.django_db
@pytest.mark.parametrize("model", UNDELETABLE, ids=lambda model: model.__name__)
def test_it_deletes_nothing_the_sync_wrote(admin_client, rows, model):
    assert admin_client.get(admin_url(model, "delete", rows[model].pk)).status_code == 403


@pytest.mark.django_db
def test_it_lets_a_superuser_free_a_lease(admin_client, rows):
    lease = rows[SyncLease]

    response = admin_client.post(admin_url(SyncLease, "delete", lease.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not SyncLease.objects.filter(pk=lease.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("model", [DcsInstance, BackupRecord])
def test_it_leaves_the_raw_json_out(admin_client, rows, model):
    html = admin_client.get(admin_url(model, "change", rows[model].pk)).text

    assert "raw-json-here" not in html


@pytest.mark.django_db
def test_it_shows_a_runs_errors(admin_client, rows):
    html = admin_client.get(admin_url(SyncRun, "change", rows[SyncRun].pk)).text

    assert "DCS.5000" in html
    assert "HTTP 500" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        (DcsInstance, {"q": "orders"}, "orders-cache"),
        (DcsInstance, {"region": "cn-north-4"}, "orders-cache"),
        (BackupRecord, {"status__exact": "succeed"}, "backup_"),
        (BackupRecord, {"q": "dcs.08.0002"}, "backup_"),
        (SyncRun, {"outcome__exact": "partial"}, "fleet"),
        (SyncRun, {"q": "fleet"}, "fleet"),
        (SyncError, {"q": "DCS.5000"}, "instance x"),
        (SyncLease, {"q": "sync:fleet"}, "run-1"),
        (WorkerHeartbeat, {"q": "worker-1"}, "celery@worker-1"),
    ],
)
def test_it_filters_and_searches(admin_client, rows, model, params, expected):
    response = admin_client.get(admin_url(model, "changelist"), params)

    assert response.status_code == 200
    assert expected in response.text


@pytest.mark.django_db
def test_it_keeps_out_who_is_not_staff(client, rows):
    client.force_login(User.objects.create_user("viewer", password="not-a-real-password-1"))

    response = client.get(admin_url(SyncRun, "changelist"))

    assert response.status_code == 302
    assert "/admin/login/" in response.url


@pytest.mark.django_db
def test_it_offers_the_sync_permission_to_grant(admin_client, rows):
    user = User.objects.create_user("operator", password="not-a-real-password-1")

    html = admin_client.get(reverse("admin:auth_user_change", args=[user.pk])).text

    assert "Can start a sync now" in html
