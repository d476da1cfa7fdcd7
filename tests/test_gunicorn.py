"""The production configuration, served for real: ``Procfile`` under honcho (gunicorn, a Celery
worker and beat) on this machine's PostgreSQL and Redis, checked over HTTP.

DEBUG is off, ``DASHBOARD_PRODUCTION`` on, with its own secret key and host
names; requests arrive as from a TLS proxy (``X-Forwarded-Proto: https``).
The test migrates and collects the static files into a throwaway folder,
signs in, and checks a page, a hashed and compressed static file, /healthz
(200 once the worker's start-up sync is done) and /metrics, then stops
everything with SIGTERM and checks that gunicorn and the worker shut down
gracefully.

It needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 and is
skipped, saying why, when either is unreachable; `.ci/run` starts both.
It uses a database of its own (``dcs_gunicorn_test``), not pytest-django's.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from backups.simulator.server import SimulatorServer
from tests.conftest import PROJECTS, TEST_AK, TEST_SK, make_simulator
from tests.test_healthz import ALL_HEALTHY, verdicts

pytestmark = pytest.mark.gunicorn

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "dcs_gunicorn_test"
REDIS_URL = "redis://127.0.0.1:6379/14"
PASSWORD = "a long and unguessable test password 4711"
HTTPS = {"X-Forwarded-Proto": "https"}


def _postgres_or_skip():
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({type(exc).__name__})")
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return f"postgres://postgres@127.0.0.1:5432/{DATABASE}"


def _redis_or_skip():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.flushdb()  # our own database number: stale tasks of an earlier run go
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"Redis is not reachable on 127.0.0.1:6379 ({type(exc).__name__})")
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def production(tmp_path):
    database_url = _postgres_or_skip()
    _redis_or_skip()
    simulator = make_simulator(instances=8)
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        port = _free_port()
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DASHBOARD_", "DCS_"))}
        keep = {k: v for k, v in keep.items() if not k.startswith(("HUAWEICLOUD_", "METRICS_"))}
        env = {
            **keep,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "DASHBOARD_PRODUCTION": "true",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
            "DASHBOARD_DATA_DIR": str(tmp_path / "data"),
            "DASHBOARD_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "2",
            "DCS_SYNC_CONCURRENCY": "2",
            "METRICS_TOKEN": secrets.token_urlsafe(24),
            "HUAWEICLOUD_SDK_AK": TEST_AK,
            "HUAWEICLOUD_SDK_SK": TEST_SK,
            "DCS_PROJECTS": ",".join(f"{p.region}:{p.project_id}" for p in PROJECTS),
            "DCS_ENDPOINT": server.url,
            "DCS_RATE_LIMIT": "0",
            "PYTHONUNBUFFERED": "1",
        }

        def manage(*args: str, **kwargs) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                timeout=300, **kwargs,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            return done

        manage("migrate", "--no-input")
        manage("collectstatic", "--no-input", "-v0")
        manage("createuser", "alice", "--role", "viewer", input=PASSWORD + "\n")

        log_path = tmp_path / "honcho.log"
        with log_path.open("w") as log:
            honcho = subprocess.Popen(
                [str(BIN / "honcho"), "--no-colour", "-f", "Procfile", "start"],
                cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(
                lambda: _answers(f"{base}/healthz"), timeout=60, what="gunicorn to listen", log=log_path
            )
            yield base, env, log_path, honcho, tmp_path
        finally:
            if honcho.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait()


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True


def _wait_for(condition, *, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")


def _sign_in(base: str) -> dict[str, str]:
    login = requests.get(f"{base}/accounts/login/", headers=HTTPS, timeout=10)
    assert login.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)[1]
    # Secure cookies: requests would not send them back over plain HTTP, so
    # they go as a header, as the browser behind the TLS proxy sends them.
    cookies = {"csrftoken": login.cookies["csrftoken"]}
    answer = requests.post(
        f"{base}/accounts/login/",
        data={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token},
        cookies=cookies,
        headers={**HTTPS, "Referer": f"https://127.0.0.1:{base.rsplit(':', 1)[1]}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text[:500]
    assert "secure" in answer.headers["Set-Cookie"].lower()
    return {**cookies, "sessionid": answer.cookies["sessionid"]}


def test_it_serves_the_production_configuration_under_gunicorn(production):
    base, env, log_path, honcho, tmp_path = production

    # The login page, with its security headers, pointing at hashed static files.
    login = requests.get(f"{base}/accounts/login/", headers=HTTPS, timeout=10)
    assert login.status_code == 200
    assert "default-src 'self'" in login.headers["Content-Security-Policy"]
    assert login.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    stylesheet = re.search(r'href="(/static/css/dashboard\.[0-9a-f]{12}\.css)"', login.text)
    assert stylesheet, "the page does not use the hashed name of the stylesheet"

    # The hashed file, compressed both ways and cached for good.
    url = base + stylesheet[1]
    for encoding in ("br", "gzip"):
        static = requests.get(url, headers={**HTTPS, "Accept-Encoding": encoding}, timeout=10)
        assert static.status_code == 200
        assert static.headers["Content-Encoding"] == encoding
        assert "immutable" in static.headers["Cache-Control"]
    assert (tmp_path / "data" / "staticfiles" / stylesheet[1].removeprefix("/static/")).exists()

    # Plain HTTP is sent to HTTPS, except the two URLs for machines.
    plain = requests.get(f"{base}/backups/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://")

    # DEBUG is off: a missing page is a plain 404, not Django's debug page.
    missing = requests.get(f"{base}/no-such-page/", headers=HTTPS, timeout=10)
    assert missing.status_code in (302, 404)
    assert "Traceback" not in missing.text and "DEBUG = True" not in missing.text

    # The worker's start-up sync makes the deployment healthy.
    def healthy():
        answer = requests.get(f"{base}/healthz", timeout=10)
        return answer if answer.status_code == 200 else None

    health = _wait_for(healthy, timeout=90, what="/healthz to answer 200", log=log_path)
    body = health.json()
    assert body["status"] == "ok"
    assert verdicts(body) == ALL_HEALTHY
    assert body["checks"]["broker"]["kind"] == "redis"

    # A page after signing in shows the synced records.
    cookies = _sign_in(base)
    page = requests.get(f"{base}/backups/", cookies=cookies, headers=HTTPS, timeout=10)
    assert page.status_code == 200
    assert "backup_" in page.text or "manual" in page.text.lower()
    export = requests.get(f"{base}/backups/?_export=csv", cookies=cookies, headers=HTTPS, timeout=30)
    assert export.status_code == 200
    assert export.text.count("\r\n") > 10

    # Metrics: only with the token, then in the Prometheus format.
    assert requests.get(f"{base}/metrics", timeout=10).status_code == 401
    metrics = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {env['METRICS_TOKEN']}"}, timeout=10
    )
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain; version=")
    assert re.search(r'^dcs_dashboard_backup_records\{[^}]*status="succeed"[^}]*\} [1-9]', metrics.text, re.M)
    assert re.search(r"^dcs_dashboard_sync_last_success_timestamp_seconds [1-9]", metrics.text, re.M)
    assert TEST_SK not in metrics.text and TEST_SK not in health.text

    # SIGTERM: gunicorn drains its workers, the Celery worker shuts down warm.
    os.killpg(honcho.pid, signal.SIGTERM)
    honcho.wait(timeout=30)
    log = log_path.read_text()
    assert "Handling signal: term" in log
    assert "Shutting down: Master" in log
    assert re.search(r"worker: Warm shutdown", log), log[-3000:]
    assert TEST_SK not in log


def _clean_env(tmp_path, **extra) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DASHBOARD_", "DCS_"))}
    return {**keep, "DATABASE_URL": "", "REDIS_URL": "", "DASHBOARD_DATA_DIR": str(tmp_path), **extra}


@pytest.mark.parametrize(
    ("program", "env", "message"),
    [
        (["gunicorn", "--config", "dashboard/gunicorn.py", "--check-config", "dashboard.wsgi"],
         {"DASHBOARD_PORT": "eighty"}, "DASHBOARD_PORT must be a whole number"),
        (["gunicorn", "--config", "dashboard/gunicorn.py", "--check-config", "dashboard.wsgi"],
         {"DCS_SYNC_INTERVAL": "soon"}, "DCS_SYNC_INTERVAL must be a whole number"),
        (["gunicorn", "--config", "dashboard/gunicorn.py", "--check-config", "dashboard.wsgi"],
         {"DASHBOARD_PRODUCTION": "true", "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
          "DJANGO_ALLOWED_HOSTS": "dcs.example.com"}, "run `manage.py collectstatic` first"),
        (["celery", "-A", "dashboard", "worker", "--pool", "solo"],
         {"DASHBOARD_LOG_FORMAT": "xml"}, "DASHBOARD_LOG_FORMAT must be one of"),
        (["celery", "-A", "dashboard", "beat"],
         {"DJANGO_DEBUG": "perhaps"}, "DJANGO_DEBUG must be a boolean"),
    ],
)  # fmt: skip
def test_every_process_stops_on_a_bad_variable_with_one_line(tmp_path, program, env, message):
    done = subprocess.run(
        [str(BIN / program[0]), *program[1:]], cwd=BASE_DIR, env=_clean_env(tmp_path, **env),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"Configuration error: {done.stderr.split(': ', 1)[1].strip()}"
    )
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_gunicorn_configuration_is_valid(tmp_path):
    done = subprocess.run(
        [str(BIN / "gunicorn"), "--config", "dashboard/gunicorn.py", "--check-config", "--print-config",
         "dashboard.wsgi"],
        cwd=BASE_DIR, env=_clean_env(tmp_path, DASHBOARD_BIND="127.0.0.1:8123"), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = {
        key.strip(): value.strip()
        for key, _, value in (line.partition("=") for line in done.stdout.splitlines())
    }
    assert printed["worker_class"] == "gthread"
    assert printed["bind"] == "['127.0.0.1:8123']"
    assert int(printed["graceful_timeout"]) > 0
