"""manage.py on a database it cannot use: a few lines that say what to do, never a traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from dashboard.cli import redacted
from tests.conftest import manage_py

UNREACHABLE = "postgres://dba:pw-n0t-in-output@127.0.0.1:1/dcs"  # port 1: nothing listens


def manage(tmp_path, *args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    return manage_py(
        *args, env={**env, "DASHBOARD_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url}, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [
        ("sync_status",),
        ("detect_anomalies", "--all"),
        ("export_backups", "--format", "csv"),
        ("send_alerts",),
    ],
)
def test_a_database_never_migrated_says_to_migrate(tmp_path, args):
    result = manage(tmp_path, *args, database_url=f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Database error: no such table: " in result.stderr
    assert "The database is not set up: " in result.stderr
    assert "Run `python manage.py migrate`" in result.stderr


def test_once_migrated_the_same_command_works(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    assert manage(tmp_path, "migrate", "--no-input", "-v0", database_url=url).returncode == 0
    result = manage(tmp_path, "sync_status", database_url=url)
    assert result.returncode == 2  # stale: never synced, which is the truth of a new database
    assert result.stderr == ""
    assert "(no sync runs yet)" in result.stdout
    assert "fleet:   never synced" in result.stdout


@pytest.mark.parametrize("command", ["sync_status", "migrate"])
def test_an_unreachable_database_says_to_check_the_url_without_its_password(tmp_path, command):
    result = manage(tmp_path, command, database_url=UNREACHABLE)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Connection refused" in result.stderr
    assert "The database cannot be reached: check DATABASE_URL" in result.stderr
    assert "pw-n0t-in-output" not in result.stderr + result.stdout


def test_traceback_still_shows_the_traceback(tmp_path):
    result = manage(tmp_path, "sync_status", "--traceback", database_url=UNREACHABLE)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "OperationalError" in result.stderr


def test_the_password_is_taken_out_of_what_the_database_says():
    assert (
        redacted('role "dba" with password "s3cret" failed', "s3cret")
        == 'role "dba" with password "***" failed'
    )
    assert redacted("no password here", "") == "no password here"
