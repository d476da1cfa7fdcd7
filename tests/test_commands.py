"""The management commands a DBA runs: sync_backups and demo_admin."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from backups.models import BackupRecord, DcsInstance, SyncRun
from tests.conftest import PROJECTS, TEST_AK, TEST_SK

pytestmark = pytest.mark.django_db


@pytest.fixture
def cloud_settings(simulator_server):
    """Settings as a deployment would have them, pointed at the simulator."""
    with override_settings(
        DCS_DEMO=False,
        DCS_AK=TEST_AK,
        DCS_SK=TEST_SK,
        DCS_PROJECTS=[f"{p.region}:{p.project_id}" for p in PROJECTS],
        DCS_ENDPOINT=simulator_server.url,
    ):
        yield


def _run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_backups", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_syncs_and_prints_a_summary(cloud_settings):
    out, err = _run()
    run = SyncRun.objects.get()
    assert "Sync succeeded (fleet)" in out
    assert f"{run.instances_seen} listed" in out
    assert f"{run.records_new} new, 0 updated, 0 gone" in out
    assert f"API calls:  {run.api_calls}" in out
    assert "duration:" in out
    assert err == ""
    assert BackupRecord.objects.count() == run.records_new > 0


def test_it_syncs_one_instance(cloud_settings):
    _run()
    instance = DcsInstance.objects.filter(backups__isnull=False).first()
    out, _ = _run("--instance", instance.instance_id)
    run = SyncRun.objects.first()
    assert run.scope == f"instance {instance.instance_id}"
    assert run.api_calls == 2  # its backups and its restores
    assert "Sync succeeded" in out


def test_it_refuses_an_unknown_instance(cloud_settings):
    with pytest.raises(CommandError, match="no instance 'nope' is known"):
        _run("--instance", "nope")


def test_it_exits_1_and_shows_the_error_when_the_sync_fails(simulator_server):
    with (
        override_settings(
            DCS_DEMO=False,
            DCS_AK=TEST_AK,
            DCS_SK="not-the-right-secret",
            DCS_PROJECTS=[f"{PROJECTS[0].region}:{PROJECTS[0].project_id}"],
            DCS_ENDPOINT=simulator_server.url,
        ),
        pytest.raises(SystemExit) as exited,
    ):
        _run()
    assert exited.value.code == 1
    assert SyncRun.objects.get().outcome == "failed"


def test_it_exits_1_when_the_api_is_unreachable(capsys):
    with override_settings(
        DCS_DEMO=False,
        DCS_AK=TEST_AK,
        DCS_SK=TEST_SK,
        DCS_PROJECTS=["cn-north-4:p1"],
        DCS_ENDPOINT="http://127.0.0.1:9",
        DCS_CONNECT_TIMEOUT=0.5,
    ):
        err = io.StringIO()
        with pytest.raises(SystemExit) as exited:
            call_command("sync_backups", stdout=io.StringIO(), stderr=err)
    assert exited.value.code == 1
    assert "ConnectionError" in err.getvalue()


def test_it_reports_bad_configuration_without_a_traceback():
    bad = override_settings(DCS_DEMO=False, DCS_AK=TEST_AK, DCS_SK=TEST_SK, DCS_PROJECTS=["no-colon-here"])
    with bad, pytest.raises(CommandError, match="DCS_PROJECTS entries look like"):
        _run()


def test_it_never_prints_the_secret_key(cloud_settings):
    out, err = _run()
    assert TEST_SK not in out + err


def test_demo_admin_creates_a_login_once_and_prints_it_each_time(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    first = io.StringIO()
    call_command("demo_admin", stdout=first)
    password = (tmp_path / "demo-admin-password").read_text()
    assert f"admin / {password}" in first.getvalue()
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)

    again = io.StringIO()
    call_command("demo_admin", stdout=again)
    assert f"admin / {password}" in again.getvalue()
    assert get_user_model().objects.count() == 1


def test_demo_admin_does_not_reset_a_changed_password(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("demo_admin", stdout=io.StringIO())
    user = get_user_model().objects.get(username="admin")
    user.set_password("changed-by-the-dba-1")
    user.save()
    out = io.StringIO()
    call_command("demo_admin", stdout=out)
    assert "password was changed" in out.getvalue()
    assert get_user_model().objects.get(username="admin").check_password("changed-by-the-dba-1")
