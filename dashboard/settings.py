"""Settings for the DCS backup dashboard.

Everything comes from the environment through the typed helpers in
``dashboard.env``. Every setting has a safe default for the embedded mode
(SQLite, a filesystem broker and the built-in DCS simulator), so a fresh
checkout runs with no configuration at all.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from backups.alerts.config import (
    WEBHOOK_FORMATS,
    check_base_url,
    check_emails,
    check_webhook_template,
    check_webhook_url,
)
from backups.dcs.config import check_region, parse_projects
from dashboard.env import envbool, envchoice, envcidrs, envfloat, envint, envlist, envstr, envtimezone

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the embedded mode keeps its SQLite file, broker queue, beat schedule
# and generated demo credentials. Ignored by git.
DATA_DIR = Path(envstr("DASHBOARD_DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DJANGO_DEBUG", False)
# Production is declared, not guessed: the embedded mode (`make run`, plain
# HTTP on 127.0.0.1, a generated key) must keep working with real cloud
# credentials too, so neither "not DEBUG" nor "not demo" can mean production.
# Production refuses to start without its own secret key and host names, and
# turns on HTTPS-only cookies, HSTS and the SSL redirect (see "Security").
PRODUCTION = envbool("DASHBOARD_PRODUCTION", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DASHBOARD_PRODUCTION is on")

_GENERATED_KEY_PATH = DATA_DIR / "secret_key"


def _secret_key() -> str:
    key = envstr("DJANGO_SECRET_KEY")
    if PRODUCTION:
        if not key:
            raise ImproperlyConfigured("DASHBOARD_PRODUCTION is on but DJANGO_SECRET_KEY is not set")
        # Django's own deploy check wants 50+ characters, at least 5 different.
        if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY must be a random string of at least 50 characters in production"
            )
        if _GENERATED_KEY_PATH.exists() and _GENERATED_KEY_PATH.read_text().strip() == key:
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY is the embedded mode's generated key; production needs its own"
            )
        return key
    if key:
        return key
    # Embedded mode: a random key, kept in the data folder so sessions survive
    # a restart. Production sets DJANGO_SECRET_KEY.
    if not _GENERATED_KEY_PATH.exists():
        _GENERATED_KEY_PATH.write_text(secrets.token_urlsafe(50))
        _GENERATED_KEY_PATH.chmod(0o600)
    return _GENERATED_KEY_PATH.read_text().strip()


SECRET_KEY = _secret_key()
if PRODUCTION and not envlist("DJANGO_ALLOWED_HOSTS"):
    # The loopback default would make every real request a 400.
    raise ImproperlyConfigured("DASHBOARD_PRODUCTION is on but DJANGO_ALLOWED_HOSTS is not set")
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    # Django wants the scheme; without it every sign-in would fail the CSRF check.
    if not _origin.startswith(("https://", "http://")):
        raise ImproperlyConfigured(
            f"DJANGO_CSRF_TRUSTED_ORIGINS entries are origins like https://dcs.example.com, got {_origin!r}"
        )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_tables2",
    "django_filters",
    "django_htmx",
    "backups",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "backups.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "backups.middleware.ViewerTimezoneMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "dashboard.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "backups.context_processors.dashboard",
            ],
        },
    },
]

WSGI_APPLICATION = "dashboard.wsgi.application"

# --- Security -----------------------------------------------------------------

# Always on, HTTP or HTTPS: no framing, no MIME sniffing, no referrer to other
# sites, and a window of its own (other sites' windows cannot script it).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# HTTPS only in production; the embedded mode serves plain HTTP on loopback,
# where secure cookies would never come back and HSTS would lock the browser
# out of every other local port.
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
# Behind a TLS-terminating proxy that already redirects to HTTPS, turn this off
# (and set DJANGO_SECURE_PROXY_SSL_HEADER so Django knows the request was HTTPS).
SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = envbool("DJANGO_SECURE_HSTS_PRELOAD", PRODUCTION)
# "HTTP_X_FORWARDED_PROTO,https": the header the proxy sets and the value that
# means HTTPS. Only set it behind a proxy that always sets (or strips) it.
_proxy_header = envlist("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    if len(_proxy_header) != 2 or not _proxy_header[0].startswith("HTTP_"):
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER must be HEADER,VALUE like HTTP_X_FORWARDED_PROTO,https"
        )
    SECURE_PROXY_SSL_HEADER = (_proxy_header[0], _proxy_header[1])
SILENCED_SYSTEM_CHECKS: list[str] = []
if PRODUCTION and not SECURE_SSL_REDIRECT:
    # Turned off on purpose: the proxy in front redirects to HTTPS.
    SILENCED_SYSTEM_CHECKS.append("security.W008")

# Content-Security-Policy on every response (backups/csp.py). No inline
# scripts or styles anywhere: JS and CSS are static files, htmx is told not to
# inject its indicator styles, and SVG charts use presentation attributes.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}

# --- Database -----------------------------------------------------------------

DATABASE_URL = envstr("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'dashboard.sqlite3'}"
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
except Exception as exc:  # dj-database-url raises a bare ValueError/KeyError
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None

if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["CONN_MAX_AGE"] = 0
    _database["OPTIONS"] = {
        # WAL lets the web server read while the worker writes; the busy
        # timeout makes a writer wait for the other instead of failing, and
        # IMMEDIATE transactions take the write lock up front so two writers
        # queue rather than deadlock on a lock upgrade.
        # A checkpoint every 16,000 pages of WAL (not 1,000): a sync's
        # listing dirties pages all over the records' indexes, and each
        # checkpoint and its fsync then come every few listings rather than
        # after each. The WAL file is cut back to 64 MiB after a checkpoint.
        # (The sync's own connection also gets a bigger page cache:
        # backups.db.bulk_writer.)
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA wal_autocheckpoint=16000; PRAGMA journal_size_limit=67108864;"
        ),
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
    }
    # A file, not :memory:, so that a Celery worker started by a test can
    # open the same test database.
    _database["TEST"] = {"NAME": str(DATA_DIR / "test-dashboard.sqlite3")}
elif _database["ENGINE"] == "django.db.backends.postgresql":
    # No JIT: it compiles any query whose estimated cost passes
    # jit_above_cost, and a page's queries are short. The overview's fleet
    # query, ~15 ms to run at 2,000 instances, spent ~420 ms in JIT
    # compilation whenever the planner's row estimate ran high.
    _options = _database.setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c jit=off".strip()
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "backups:backup-list"
LOGOUT_REDIRECT_URL = "login"

# Roles, sign-in rate limits, sessions and single sign-on (backups/roles.py,
# backups/access.py, backups/audit.py). Added to the lists above, in one place.
INSTALLED_APPS += ["axes"]
_auth_at = MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
# Single sign-on: the request.META key an authenticating proxy puts the user
# name in, e.g. HTTP_X_REMOTE_USER for "X-Remote-User". Off when empty. The
# proxy MUST strip that header from what clients send, or anyone can claim to
# be anyone.
DASHBOARD_REMOTE_USER_HEADER = envstr("DASHBOARD_REMOTE_USER_HEADER")
# Whether a name the proxy vouches for and we do not know becomes a new user
# (with DASHBOARD_DEFAULT_ROLE); otherwise an admin creates it first.
DASHBOARD_REMOTE_USER_CREATE = envbool("DASHBOARD_REMOTE_USER_CREATE", False)
MIDDLEWARE[_auth_at:_auth_at] = ["backups.audit.AuditRequestMiddleware"] + (
    ["backups.access.DashboardRemoteUserMiddleware"] if DASHBOARD_REMOTE_USER_HEADER else []
)
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.LoginRequiredMiddleware") + 1,
    "backups.access.RoleRequiredMiddleware",
)
# Last, as django-axes asks: it turns a locked-out sign-in into its page.
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username+address before a password is checked.
    "axes.backends.AxesStandaloneBackend",
    *(["backups.access.DashboardRemoteUserBackend"] if DASHBOARD_REMOTE_USER_HEADER else []),
    "django.contrib.auth.backends.ModelBackend",
]
# The role a new account gets (viewer, operator, admin), from the admin or
# single sign-on; empty for none: then it sees nothing until an admin gives one.
DASHBOARD_DEFAULT_ROLE = envstr("DASHBOARD_DEFAULT_ROLE", "viewer").lower()
if DASHBOARD_DEFAULT_ROLE not in ("", "viewer", "operator", "admin"):
    raise ImproperlyConfigured(
        f"DASHBOARD_DEFAULT_ROLE must be viewer, operator, admin or empty, got {DASHBOARD_DEFAULT_ROLE!r}"
    )
# Sign-ins: after AXES_FAILURE_LIMIT failures for one username from one
# address, that pair is refused for AXES_COOLOFF_MINUTES; a success resets it.
AXES_ENABLED = envbool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = envint("AXES_COOLOFF_MINUTES", 15, minimum=1, maximum=7 * 24 * 60) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Who signed in is in our audit log; axes keeps only the failures it counts.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# Sessions end this many hours after sign-in.
DASHBOARD_SESSION_HOURS = envint("DASHBOARD_SESSION_HOURS", 12, minimum=1, maximum=24 * 90)
SESSION_COOKIE_AGE = DASHBOARD_SESSION_HOURS * 3600

# --- I18n and time ------------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
# The zone pages are shown in until a viewer picks one in the header (a
# cookie). Stored times and exports are UTC whatever it is.
DASHBOARD_TIME_ZONE = envtimezone("DASHBOARD_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Dashboard ----------------------------------------------------------------

# The default RPO: an instance is at risk when its last successful backup is
# older than this, unless an RPO policy for its region, a tag or itself says
# otherwise (backups.rpo). DASHBOARD_AT_RISK_HOURS is the older name, still
# read when the new one is unset.
DASHBOARD_RPO_HOURS = envint(
    "DASHBOARD_RPO_HOURS",
    envint("DASHBOARD_AT_RISK_HOURS", 26, minimum=1, maximum=24 * 365),
    minimum=1,
    maximum=24 * 365,
)
DASHBOARD_AT_RISK_HOURS = DASHBOARD_RPO_HOURS
# A succeeded backup is an anomaly when its size or duration differs from the
# median of the instance's previous DASHBOARD_ANOMALY_WINDOW succeeded backups
# by more than this ratio (0.4: 40 % smaller or larger); with fewer than five
# known values before it, nothing is flagged.
DASHBOARD_ANOMALY_RATIO = envfloat("DASHBOARD_ANOMALY_RATIO", 0.4, minimum=0.01)
if DASHBOARD_ANOMALY_RATIO > 100:  # envfloat has no maximum; inf would flag nothing, silently
    raise ImproperlyConfigured(f"DASHBOARD_ANOMALY_RATIO must be at most 100, got {DASHBOARD_ANOMALY_RATIO}")
DASHBOARD_ANOMALY_WINDOW = envint("DASHBOARD_ANOMALY_WINDOW", 14, minimum=5, maximum=1000)
# The overview warns when the last successful fleet sync is older than this.
DASHBOARD_SYNC_STALE_MINUTES = envint("DASHBOARD_SYNC_STALE_MINUTES", 30, minimum=1)

# --- Static files -------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("DASHBOARD_STATIC_ROOT") or DATA_DIR / "staticfiles").resolve()
# Hashed, compressed file names (collectstatic first): on by default in production.
DASHBOARD_MANIFEST_STATIC = envbool("DASHBOARD_MANIFEST_STATIC", PRODUCTION)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing one
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if DASHBOARD_MANIFEST_STATIC
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Without collectstatic (the embedded mode), WhiteNoise serves straight from
# the finders, so `make run` needs no build step. With the manifest (production,
# after collectstatic) it serves only the collected files: hashed names, with
# their .gz/.br siblings, cached by browsers for good.
WHITENOISE_USE_FINDERS = not DASHBOARD_MANIFEST_STATIC

DJANGO_TABLES2_TEMPLATE = "includes/table.html"

# --- Celery -------------------------------------------------------------------

REDIS_URL = envstr("REDIS_URL")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    # Said here, without the URL (it may hold a password), rather than by
    # Celery's retry loop, which would wait for a broker that cannot exist.
    raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
else:
    # Embedded broker: kombu's filesystem transport needs nothing but pip.
    # Fine for one machine; production sets REDIS_URL.
    _queue_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
        # The default 1 s poll would add a second to each task of a fan-out.
        "polling_interval": 0.1,
        # Remote control (purge, ping) keeps its tables here, not in the working directory.
        "control_folder": str(_queue_dir / "control"),
    }
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when it ends, not when it starts, and one whose worker
# died is delivered again: every sync task is idempotent (backups/tasks.py).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# After the broker connection drops, unacknowledged tasks go back to the queue;
# the running ones are cancelled so that they do not also finish here.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# One task at a time per worker process: a long sync never holds others back.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers and beat wait for a broker that is down, at start-up and later, for
# as long as it takes, and carry on by themselves when it is back.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Stay well under the broker's visibility timeout, so a slow task is killed
# before the broker hands it to another worker.
CELERY_TASK_SOFT_TIME_LIMIT = envint("DCS_SYNC_TIME_LIMIT", 1800, minimum=10, maximum=3000)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60

# --- DCS API ------------------------------------------------------------------

# The same variables the Huawei SDK reads. With no AK the dashboard runs in
# demo mode against the built-in simulator.
DCS_AK = envstr("HUAWEICLOUD_SDK_AK")
DCS_SK = envstr("HUAWEICLOUD_SDK_SK")
DCS_PROJECT_ID = envstr("HUAWEICLOUD_SDK_PROJECT_ID")
# Temporary credentials: sent as X-Security-Token.
DCS_SECURITY_TOKEN = envstr("HUAWEICLOUD_SDK_SECURITY_TOKEN")
DCS_REGION = envstr("DCS_REGION", "cn-north-4")
DCS_ENDPOINT = envstr("DCS_ENDPOINT")
# Several region/project pairs: "cn-north-4:<project_id>,ap-southeast-1:<project_id>".
DCS_PROJECTS = envlist("DCS_PROJECTS")
DCS_DEMO = not DCS_AK
if not DCS_DEMO and not DCS_SK:
    raise ImproperlyConfigured("HUAWEICLOUD_SDK_AK is set but HUAWEICLOUD_SDK_SK is not")
if DCS_DEMO and DCS_SECURITY_TOKEN:
    # A token is only half of temporary credentials; without the AK/SK it
    # came with, demo mode would quietly ignore it.
    raise ImproperlyConfigured("HUAWEICLOUD_SDK_SECURITY_TOKEN is set but HUAWEICLOUD_SDK_AK is not")
# Checked here, at start-up, rather than at the first sync: a typo in a
# region or a missing project id stops every process with the reason.
check_region(DCS_REGION)
parse_projects(DCS_PROJECTS)
if not DCS_DEMO and not DCS_PROJECTS and not DCS_PROJECT_ID:
    raise ImproperlyConfigured(
        "HUAWEICLOUD_SDK_AK is set but no project is: set DCS_PROJECTS "
        "(cn-north-4:<project_id>,...) or HUAWEICLOUD_SDK_PROJECT_ID with DCS_REGION"
    )
DCS_SIMULATOR_PORT = envint("DCS_SIMULATOR_PORT", 8765, minimum=1, maximum=65535)
DCS_CONNECT_TIMEOUT = envfloat("DCS_CONNECT_TIMEOUT", 5.0, minimum=0.1)
DCS_READ_TIMEOUT = envfloat("DCS_READ_TIMEOUT", 30.0, minimum=0.1)
DCS_PAGE_SIZE = envint("DCS_PAGE_SIZE", 1000, minimum=1, maximum=1000)
# A failed call (connection error, timeout, 429, 5xx, an undecodable body) is
# retried at most this many times, after a random wait of up to
# DCS_RETRY_BACKOFF·2^(n-1) seconds (never more than 30 s); a 429's Retry-After
# is honoured up to DCS_RETRY_AFTER_CAP. Other 4xx are never retried.
DCS_MAX_RETRIES = envint("DCS_MAX_RETRIES", 4, minimum=0, maximum=10)
DCS_RETRY_BACKOFF = envfloat("DCS_RETRY_BACKOFF", 0.5, minimum=0)
DCS_RETRY_AFTER_CAP = envfloat("DCS_RETRY_AFTER_CAP", 60.0, minimum=0)
# Requests per second to the DCS API from the whole deployment: shared by all
# workers through Redis when REDIS_URL is set, per process otherwise. The
# gateway throttles at 200/s per API (APIG.0308). 0 turns the limit off.
DCS_RATE_LIMIT = envfloat("DCS_RATE_LIMIT", 20.0, minimum=0)
for _name, _value, _most in (
    ("DCS_RETRY_BACKOFF", DCS_RETRY_BACKOFF, 60),
    ("DCS_RETRY_AFTER_CAP", DCS_RETRY_AFTER_CAP, 600),
    ("DCS_RATE_LIMIT", DCS_RATE_LIMIT, 200),
):
    if _value > _most:  # envfloat has no maximum; inf and typos like 2000 stop here
        raise ImproperlyConfigured(f"{_name} must be at most {_most}, got {_value:g}")

# --- Logging ------------------------------------------------------------------

# DASHBOARD_LOG_FORMAT=json writes one JSON object per line (for a log
# shipper); plain is for people. Both go through the redaction filter, which
# blanks the SK and the security token should any code ever log them.
DASHBOARD_LOG_FORMAT = envchoice("DASHBOARD_LOG_FORMAT", "plain", ("plain", "json"))
DASHBOARD_LOG_LEVEL = envchoice(
    "DASHBOARD_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), upper=True
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "dashboard.logformat.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "dashboard.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": DASHBOARD_LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": DASHBOARD_LOG_LEVEL},
    # axes logs every sign-in at INFO; failures and lockouts are in the audit log.
    "loggers": {"urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
# Celery replaces the root logger's handlers with its own plain ones unless
# told not to: in JSON mode workers and beat must write JSON too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = DASHBOARD_LOG_FORMAT != "json"

# --- Health and metrics (backups/views/ops.py) --------------------------------

# /metrics answers a request with "Authorization: Bearer <METRICS_TOKEN>", or
# from an address in METRICS_ALLOWED_IPS (CIDRs, the direct peer's address).
# With neither set it answers 404: nothing is exposed by default.
METRICS_TOKEN = envstr("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (a random string)")
METRICS_ALLOWED_IPS = envcidrs("METRICS_ALLOWED_IPS")
# A load balancer or Prometheus may ask the app server directly over plain
# HTTP on a private network: these two never redirect to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

# --- Retention ------------------------------------------------------------------

# Everything is kept unless this is set: then beat deletes, once a day and a
# batch at a time, backup records the API stopped listing more than this many
# days ago (by gone_at). 0 keeps them for good.
DASHBOARD_RETENTION_GONE_DAYS = envint("DASHBOARD_RETENTION_GONE_DAYS", 0, minimum=0, maximum=100 * 365)

# --- Alerts (backups/alerts/) -------------------------------------------------

# Absolute links in alerts and digests point here (no trailing slash).
DASHBOARD_BASE_URL = check_base_url(
    "DASHBOARD_BASE_URL", envstr("DASHBOARD_BASE_URL", "http://127.0.0.1:8000")
)
# Who gets alerts by email (comma-separated); empty: no email. Sent with
# Django's mail backend through EMAIL_HOST, from DEFAULT_FROM_EMAIL.
DASHBOARD_ALERT_EMAILS = check_emails("DASHBOARD_ALERT_EMAILS", envlist("DASHBOARD_ALERT_EMAILS"))
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "dcs-dashboard@localhost")
if DASHBOARD_ALERT_EMAILS:
    check_emails("DEFAULT_FROM_EMAIL", [DEFAULT_FROM_EMAIL.rsplit("<", 1)[-1].rstrip(">").strip()])
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_BACKEND = envstr("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on")
# A mail server that does not answer must not hold a worker for long.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10, minimum=1, maximum=300)
# A webhook that gets a JSON POST per alert; its URL is a secret (a chat
# bot's token is in it) and is shown nowhere but as scheme://host.
DASHBOARD_ALERT_WEBHOOK_URL = check_webhook_url(
    "DASHBOARD_ALERT_WEBHOOK_URL", envstr("DASHBOARD_ALERT_WEBHOOK_URL")
)
# A Django template file that renders the webhook's JSON body (then the format is "template").
DASHBOARD_ALERT_WEBHOOK_TEMPLATE = check_webhook_template(
    "DASHBOARD_ALERT_WEBHOOK_TEMPLATE", envstr("DASHBOARD_ALERT_WEBHOOK_TEMPLATE")
)
DASHBOARD_ALERT_WEBHOOK_FORMAT = envchoice(
    "DASHBOARD_ALERT_WEBHOOK_FORMAT",
    "template" if DASHBOARD_ALERT_WEBHOOK_TEMPLATE else "generic",
    WEBHOOK_FORMATS,
)
if (DASHBOARD_ALERT_WEBHOOK_FORMAT == "template") != bool(DASHBOARD_ALERT_WEBHOOK_TEMPLATE):
    raise ImproperlyConfigured(
        "DASHBOARD_ALERT_WEBHOOK_FORMAT=template goes with DASHBOARD_ALERT_WEBHOOK_TEMPLATE, and only with it"
    )
DASHBOARD_ALERT_WEBHOOK_TIMEOUT = envfloat("DASHBOARD_ALERT_WEBHOOK_TIMEOUT", 10.0, minimum=0.1)
if DASHBOARD_ALERT_WEBHOOK_TIMEOUT > 120:
    raise ImproperlyConfigured(
        f"DASHBOARD_ALERT_WEBHOOK_TIMEOUT must be at most 120, got {DASHBOARD_ALERT_WEBHOOK_TIMEOUT:g}"
    )
# Only backups created this recently raise a "backup failed" alert: the first
# sync of years of history must not page anybody for an old failure.
DASHBOARD_ALERT_LOOKBACK_HOURS = envint("DASHBOARD_ALERT_LOOKBACK_HOURS", 48, minimum=1, maximum=24 * 365)
# How often beat evaluates the alerts (also right after each fleet sync).
DASHBOARD_ALERT_EVERY_MINUTES = envint("DASHBOARD_ALERT_EVERY_MINUTES", 5, minimum=1, maximum=24 * 60)
# A failed notification is tried again at each evaluation, this many times in all.
DASHBOARD_ALERT_MAX_ATTEMPTS = envint("DASHBOARD_ALERT_MAX_ATTEMPTS", 5, minimum=1, maximum=100)
# The daily digest goes out once a day, at the first check after this hour (UTC).
DASHBOARD_ALERT_DIGEST = envbool("DASHBOARD_ALERT_DIGEST", True)
DASHBOARD_ALERT_DIGEST_HOUR = envint("DASHBOARD_ALERT_DIGEST_HOUR", 8, minimum=0, maximum=23)

# --- Sync schedule (Celery beat) ---------------------------------------------

# The demo fleet is tiny and local, so it is synced often enough to watch.
DCS_SYNC_INTERVAL = envint("DCS_SYNC_INTERVAL", 30 if DCS_DEMO else 300, minimum=10)
# Instances with a waiting or running backup are re-listed this often, so
# their progress bars move.
DCS_ACTIVE_POLL_INTERVAL = envint("DCS_ACTIVE_POLL_INTERVAL", 15, minimum=5)
# An incremental sync lists an instance's restores when they were last listed
# longer ago than this, or one is still running; a full sync always does.
DCS_RESTORE_SYNC_INTERVAL = envint("DCS_RESTORE_SYNC_INTERVAL", 3600, minimum=0, maximum=7 * 24 * 3600)
# The fleet tick is incremental (each instance lists only a recent window) unless
# the last full sync is older than this: then it is full, lists everything and
# marks what the cloud no longer lists as gone.
DCS_FULL_SYNC_INTERVAL = envint("DCS_FULL_SYNC_INTERVAL", 6 * 3600, minimum=60)
# An incremental listing starts this many seconds before the instance's last
# successful listing (and before its oldest running backup).
DCS_INCREMENTAL_OVERLAP = envint("DCS_INCREMENTAL_OVERLAP", 3600, minimum=60)
# Instances of one run synced at once: the fan-out's window of in-flight tasks.
DCS_SYNC_CONCURRENCY = envint("DCS_SYNC_CONCURRENCY", 4, minimum=1, maximum=64)
# Seconds a sync lease lives without renewal. A working sync renews it every
# third of that; a killed worker's leases run out after it, and the next sync
# (or the housekeeping task) finishes the run it left behind.
DCS_SYNC_LEASE_TTL = envint("DCS_SYNC_LEASE_TTL", 300, minimum=2, maximum=3600)
# Finished sync runs, with their errors, are kept this many days.
DCS_SYNC_RUN_RETENTION_DAYS = envint("DCS_SYNC_RUN_RETENTION_DAYS", 30, minimum=1)
# A worker that starts queues a fleet sync at once, not at beat's first tick.
DCS_SYNC_ON_WORKER_START = envbool("DCS_SYNC_ON_WORKER_START", True)
CELERY_BEAT_SCHEDULE = {
    "sync-fleet": {
        "task": "backups.sync_fleet",
        "schedule": DCS_SYNC_INTERVAL,
        "kwargs": {"kind": "auto", "trigger": "beat"},
        # A tick that could not run in time is dropped, not queued up behind.
        "options": {"expires": DCS_SYNC_INTERVAL},
    },
    "sync-active-instances": {
        "task": "backups.sync_active_instances",
        "schedule": DCS_ACTIVE_POLL_INTERVAL,
        "options": {"expires": DCS_ACTIVE_POLL_INTERVAL},
    },
    # Finishes runs whose workers died, and prunes old runs.
    "sync-housekeeping": {
        "task": "backups.sync_housekeeping",
        "schedule": 60,
        "options": {"expires": 60},
    },
}
CELERY_BEAT_SCHEDULE["alerts-evaluate"] = {
    "task": "backups.evaluate_alerts",
    "schedule": DASHBOARD_ALERT_EVERY_MINUTES * 60,
    "options": {"expires": DASHBOARD_ALERT_EVERY_MINUTES * 60},
}
# Every quarter hour: the digest goes at the first check after its hour, once a day.
CELERY_BEAT_SCHEDULE["alerts-digest"] = {
    "task": "backups.send_alert_digest",
    "schedule": 15 * 60,
    "options": {"expires": 15 * 60},
}
if DASHBOARD_RETENTION_GONE_DAYS:
    CELERY_BEAT_SCHEDULE["retention"] = {
        "task": "backups.apply_retention",
        "schedule": 24 * 3600,
        "options": {"expires": 3600},
    }
