"""The Makefile's own checks: a DBA's mistake in `make run` or `make serve` stops it with one clear line.

Each check runs before anything is started. The targets run here with no
virtualenv (``BIN`` points nowhere, and ``-o`` keeps make from building one), so
were a check missing, the next line would fail instead of starting processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.runtime", "BIN=/nonexistent", *args],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_refuses_one_port_for_the_dashboard_and_the_simulator():
    result = make("run", DASHBOARD_PORT="8765", DCS_SIMULATOR_PORT="8765")
    assert result.returncode == 2
    assert "make run: DASHBOARD_PORT and DCS_SIMULATOR_PORT are both 8765" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "missing"),
    [({}, "DATABASE_URL"), ({"DATABASE_URL": "postgres://127.0.0.1:1/none"}, "REDIS_URL")],
)
def test_serve_says_which_setting_it_needs(env, missing):
    result = make("serve", **env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"make serve: set {missing}")
