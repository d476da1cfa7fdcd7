"""gunicorn's configuration: ``gunicorn --config dashboard/gunicorn.py dashboard.wsgi`` (Procfile, systemd).

Read from the environment through ``dashboard.env``, like the settings, and
the Django settings are loaded here, in the master, before any worker is
forked: a bad variable stops gunicorn at once with one line naming it
(exit 2), instead of every worker failing to boot with a traceback.

Workers are ``gthread``: a streamed export of millions of records takes
minutes, and a ``sync`` worker would be killed by ``timeout`` in the middle
of it, because it cannot tell the master it is alive while it serves. A
thread serves the export while the worker's main loop keeps reporting.

Shutdown is graceful: on SIGTERM the master stops accepting, and workers
finish the requests they have for up to ``graceful_timeout`` seconds.
"""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

try:
    from django.conf import settings as _settings

    from dashboard.env import envint, envstr

    _settings.INSTALLED_APPS  # noqa: B018  (loads the settings: any error surfaces here)
    if _settings.DASHBOARD_MANIFEST_STATIC and not (_settings.STATIC_ROOT / "staticfiles.json").exists():
        # Every page names its static files by their hashes from this manifest:
        # without it each page would be a 500.
        raise ImproperlyConfigured(
            f"no static files in {_settings.STATIC_ROOT}: run `manage.py collectstatic` first "
            "(make serve does), or set DASHBOARD_MANIFEST_STATIC=false"
        )

    # Behind a reverse proxy on the same machine: loopback. 0.0.0.0:8000 to
    # listen everywhere (then DJANGO_ALLOWED_HOSTS must name this host).
    bind = [
        envstr("DASHBOARD_BIND") or f"127.0.0.1:{envint('DASHBOARD_PORT', 8000, minimum=1, maximum=65535)}"
    ]
    workers = envint("WEB_CONCURRENCY", 2, minimum=1, maximum=64)
    worker_class = "gthread"
    threads = envint("DASHBOARD_WEB_THREADS", 4, minimum=1, maximum=64)
    # Seconds a worker may go without telling the master it is alive.
    timeout = envint("DASHBOARD_WEB_TIMEOUT", 60, minimum=5, maximum=3600)
    graceful_timeout = envint("DASHBOARD_WEB_GRACEFUL_TIMEOUT", 30, minimum=1, maximum=3600)
    keepalive = 5
    # A worker is replaced after this many requests (with jitter, so they do
    # not all restart at once): a slow leak in any library cannot grow for good.
    max_requests = envint("DASHBOARD_WEB_MAX_REQUESTS", 2000, minimum=0)
    max_requests_jitter = max_requests // 10
    # X-Forwarded-* are trusted only from these (gunicorn's FORWARDED_ALLOW_IPS).
    forwarded_allow_ips = envstr("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    # The heartbeat files of workers: memory, not a disk that may stall.
    _shm = "/dev/shm"  # noqa: S108  (gunicorn makes its files there with mkstemp)
    if os.path.isdir(_shm):
        worker_tmp_dir = _shm
    proc_name = "dcs-dashboard"
    accesslog = "-"
    errorlog = "-"
    loglevel = _settings.DASHBOARD_LOG_LEVEL.lower()
    if _settings.DASHBOARD_LOG_FORMAT == "json":
        # The access line becomes the "message" of a JSON object, escaped by
        # the formatter: a path with quotes cannot break the line.
        logconfig_dict = {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"redact": {"()": "dashboard.logformat.RedactSecretsFilter"}},
            "formatters": {"json": {"()": "dashboard.logformat.JsonFormatter"}},
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "formatter": "json",
                    "filters": ["redact"],
                    "stream": "ext://sys.stdout",
                }
            },
            "loggers": {
                "gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False},
                "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
            },
        }
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    sys.exit(2)
