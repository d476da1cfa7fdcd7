"""Settings read the environment through typed helpers that fail loudly."""

import os
import subprocess

import pytest
from django.core.exceptions import ImproperlyConfigured

from backups.dcs.config import DcsProject, parse_projects
from dashboard.env import envbool, envfloat, envint, envlist
from tests.conftest import manage_py


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("off", False), ("", False)])
def test_envbool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert envbool("X_FLAG", not expected) is expected


def test_envbool_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be a boolean"):
        envbool("X_FLAG", False)


def test_envint_checks_type_and_range(monkeypatch):
    monkeypatch.setenv("X_INT", "12")
    assert envint("X_INT", 1, minimum=10) == 12
    monkeypatch.setenv("X_INT", "abc")
    with pytest.raises(ImproperlyConfigured, match="X_INT must be a whole number"):
        envint("X_INT", 1)
    monkeypatch.setenv("X_INT", "5")
    with pytest.raises(ImproperlyConfigured, match="X_INT must be at least 10"):
        envint("X_INT", 1, minimum=10)
    monkeypatch.delenv("X_INT")
    assert envint("X_INT", 7) == 7


def test_envfloat_refuses_nan_and_small_values(monkeypatch):
    monkeypatch.setenv("X_FLOAT", "nan")
    with pytest.raises(ImproperlyConfigured):
        envfloat("X_FLOAT", 1.0, minimum=0.1)
    monkeypatch.setenv("X_FLOAT", "0.01")
    with pytest.raises(ImproperlyConfigured):
        envfloat("X_FLOAT", 1.0, minimum=0.1)


def test_envlist_splits_and_trims(monkeypatch):
    monkeypatch.setenv("X_LIST", " a, b,,c ")
    assert envlist("X_LIST") == ["a", "b", "c"]


def test_dcs_projects_are_parsed_or_refused():
    assert parse_projects(["cn-north-4:abc", " ap-southeast-1 : def "]) == (
        DcsProject("cn-north-4", "abc"),
        DcsProject("ap-southeast-1", "def"),
    )
    for bad in (["cn-north-4"], [":abc"], ["cn-north-4:"]):
        with pytest.raises(ImproperlyConfigured):
            parse_projects(bad)


def _check(env: dict) -> subprocess.CompletedProcess:
    return manage_py("check", env={**os.environ, **env})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DCS_SYNC_INTERVAL": "soon"}, "DCS_SYNC_INTERVAL must be a whole number"),
        ({"DJANGO_DEBUG": "perhaps"}, "DJANGO_DEBUG must be a boolean"),
        ({"HUAWEICLOUD_SDK_AK": "AK", "HUAWEICLOUD_SDK_SK": ""}, "HUAWEICLOUD_SDK_SK is not"),
        ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL is not a valid database URL"),
    ],
)
def test_bad_configuration_stops_start_up_with_a_clear_message(tmp_path, env, message):
    result = _check({"DASHBOARD_DATA_DIR": str(tmp_path), **env})
    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
