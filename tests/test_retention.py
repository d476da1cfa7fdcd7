"""Retention: everything is kept by default; optionally, records gone for N days are deleted in batches."""

from __future__ import annotations

import os
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django.utils import timezone

from backups import retention, tasks
from backups.models import AuditEvent, BackupHourlyCount, BackupRecord, BackupStatusChange, DcsInstance
from tests.conftest import manage_py
from tests.factories import make_instance, make_record, make_status_change

pytestmark = pytest.mark.django_db


@pytest.fixture
def records():
    now = timezone.now()
    instance = make_instance()
    old = [make_record(instance, gone_at=now - timedelta(days=40 + n)) for n in range(5)]
    for record in old:
        make_status_change(record)
    recent = make_record(instance, gone_at=now - timedelta(days=10))
    listed = make_record(instance, created_at=now - timedelta(days=400))  # old, but still listed
    return now, old, recent, listed


def test_it_keeps_everything_by_default(settings, records):
    assert settings.DASHBOARD_RETENTION_GONE_DAYS == 0
    assert tasks.apply_retention() == {"records_deleted": 0, "off": True}
    assert BackupRecord.objects.count() == 7
    assert "retention" not in settings.CELERY_BEAT_SCHEDULE


def test_it_deletes_only_records_gone_longer_than_the_limit(records):
    now, old, recent, listed = records
    result = retention.prune_gone_records(older_than_days=30, now=now)
    assert result.records_deleted == 5
    assert result.status_changes_deleted == 5
    assert set(BackupRecord.objects.values_list("pk", flat=True)) == {recent.pk, listed.pk}
    assert not BackupStatusChange.objects.filter(record_id__in=[r.pk for r in old]).exists()


def test_it_deletes_in_batches(records):
    now, *_ = records
    result = retention.prune_gone_records(older_than_days=30, now=now, batch_size=2)
    assert (result.records_deleted, result.batches) == (5, 3)


def test_it_spares_a_record_the_sync_found_again(records):
    now, old, *_ = records
    BackupRecord.objects.filter(pk=old[0].pk).update(gone_at=None)
    assert retention.prune_gone_records(older_than_days=30, now=now).records_deleted == 4
    assert BackupRecord.objects.filter(pk=old[0].pk).exists()


def test_it_logs_and_audits_what_it_deleted(records, caplog):
    now, *_ = records
    with caplog.at_level("INFO", logger="backups.retention"):
        retention.prune_gone_records(older_than_days=30, now=now)
    line = next(r for r in caplog.records if r.name == "backups.retention")
    assert "deleted 5 backup records" in line.getMessage()
    assert line.retention["records_deleted"] == 5
    event = AuditEvent.objects.get(action="retention")
    assert event.detail["records_deleted"] == 5
    assert event.detail["older_than_days"] == 30


def test_it_audits_nothing_when_nothing_was_deleted(db):
    retention.prune_gone_records(older_than_days=30)
    assert not AuditEvent.objects.filter(action="retention").exists()


def test_beat_runs_it_daily_when_configured(settings, records):
    settings.DASHBOARD_RETENTION_GONE_DAYS = 30
    assert tasks.apply_retention()["records_deleted"] == 5
    assert BackupRecord.objects.count() == 2


def test_the_schedule_has_it_only_when_configured(tmp_path):
    code = "from django.conf import settings as s; print(s.CELERY_BEAT_SCHEDULE.get('retention'))"
    env = {**os.environ, "DATABASE_URL": "", "REDIS_URL": "", "DASHBOARD_DATA_DIR": str(tmp_path)}
    run = manage_py("shell", "--no-imports", "-c", code, env={**env, "DASHBOARD_RETENTION_GONE_DAYS": "90"})
    assert "'task': 'backups.apply_retention'" in run.stdout, run.stderr
    assert "'schedule': 86400" in run.stdout


def test_the_command_has_a_dry_run(records):
    out = StringIO()
    call_command("apply_retention", "--gone-days", "30", "--dry-run", stdout=out)
    assert "Would delete 5 backup records" in out.getvalue()
    assert BackupRecord.objects.count() == 7
    call_command("apply_retention", "--gone-days", "30", stdout=out)
    assert "Deleted 5 backup records" in out.getvalue()
    assert BackupRecord.objects.count() == 2


def test_the_command_keeps_everything_when_retention_is_off(records):
    out = StringIO()
    call_command("apply_retention", stdout=out)
    assert "Retention is off" in out.getvalue()
    assert BackupRecord.objects.count() == 7


@pytest.mark.parametrize("raw", ["0", "-1", "ten"])
def test_the_command_refuses_a_bad_number_of_days(db, raw):
    with pytest.raises(CommandError, match="--gone-days must be"):
        call_command("apply_retention", "--gone-days", raw)


def test_sync_runs_keep_their_own_retention(settings):
    # prune_history (every minute) already drops sync runs after this many days.
    assert settings.DCS_SYNC_RUN_RETENTION_DAYS == 30
    assert settings.CELERY_BEAT_SCHEDULE["sync-housekeeping"]["schedule"] == 60


def test_the_summaries_follow_the_deletes(records):
    now, _old, recent, listed = records
    retention.prune_gone_records(older_than_days=30, now=now)
    assert BackupHourlyCount.objects.aggregate(n=Sum("records"))["n"] == BackupRecord.objects.count() == 2
    instance = DcsInstance.objects.get(pk=listed.instance_id)
    assert instance.last_success_at == max(recent.created_at, listed.created_at)
