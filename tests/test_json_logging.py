"""DASHBOARD_LOG_FORMAT=json: one JSON object per line, with the structured facts and never a secret."""

from __future__ import annotations

import json
import logging
import os
import sys

from dashboard.logformat import REDACTED, JsonFormatter, RedactSecretsFilter
from tests.conftest import manage_py


def _record(message: str, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("backups.sync", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_it_writes_one_json_object_with_the_usual_fields():
    line = JsonFormatter().format(_record("sync %s", "run=7 outcome=succeeded"))
    entry = json.loads(line)
    assert entry["message"] == "sync run=7 outcome=succeeded"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "backups.sync"
    assert entry["time"].endswith("Z")
    assert "\n" not in line


def test_it_carries_the_structured_facts_of_a_sync_run_but_no_other_extra():
    record = _record("sync", sync_run={"run": 7, "api_calls": 43}, request="<WSGIRequest>", password="x")
    entry = json.loads(JsonFormatter().format(record))
    assert entry["sync_run"] == {"run": 7, "api_calls": 43}
    assert "request" not in entry and "password" not in entry


def test_it_keeps_the_exception_in_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


def test_it_redacts_the_secret_key_and_token(settings):
    settings.DCS_SK, settings.DCS_SECURITY_TOKEN = "sk-0123456789-secret", "tok-0123456789-temporary"
    record = _record("signing with %s and %s", settings.DCS_SK, settings.DCS_SECURITY_TOKEN)
    assert RedactSecretsFilter().filter(record)
    assert record.getMessage() == f"signing with {REDACTED} and {REDACTED}"


def test_the_setting_switches_every_log_line_to_json(tmp_path):
    code = "import logging; logging.getLogger('backups.test').warning('hello %s', 'world')"
    env = {
        **os.environ,
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "DASHBOARD_DATA_DIR": str(tmp_path),
        "DASHBOARD_LOG_FORMAT": "json",
    }
    done = manage_py("shell", "--no-imports", "-c", code, env=env)
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert {"message": "hello world", "level": "WARNING", "logger": "backups.test"}.items() <= lines[
        -1
    ].items()
