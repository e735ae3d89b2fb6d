"""BeeCatalog Memory settings.

Every setting that changes between machines is read here, once, from the
environment (see ``.env.example`` and the README's configuration table).
Modules read ``django.conf.settings``, never ``os.environ``.
"""
import json
import math
import re
import sys
from pathlib import Path
from typing import NoReturn

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# .env fills only what the environment leaves unset, so a value set by the process's own
# environment (docker-compose.yml's `environment:` inside the containers) wins over a .env
# written for the host. DOTENV_PATH names another file; empty, none is read.
DOTENV_PATH = env.str("DOTENV_PATH", default=str(BASE_DIR / ".env"))
if DOTENV_PATH:
    environ.Env.read_env(DOTENV_PATH, overwrite=False)


def refuse(message: str) -> NoReturn:
    """Stop the process with ``message`` on one line of stderr and no traceback: a setting to fix.

    Every entry point (manage.py, gunicorn's workers, celery, wsgi/asgi) reads this module before
    anything else; system checks would not do: gunicorn and celery never run them.
    """
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()
    # 4 is gunicorn's "App failed to load": its master stops instead of starting workers forever.
    raise SystemExit(4)


def env_seconds(name: str, default: float, *, minimum: float = 0, integer: bool = False) -> float:
    """``name`` from the environment as a number of seconds (a whole one if ``integer``) not below ``minimum``."""
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        refuse(f"{name}: use um número{' inteiro' if integer else ''} de segundos maior ou igual a {minimum:g},"
               f" não {raw!r}")
    return value


def env_whole(name: str, default: int, *, minimum: int, maximum: int) -> int:
    """``name`` from the environment as a whole number from ``minimum`` to ``maximum``."""
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        refuse(f"{name}: use um número inteiro de {minimum} a {maximum}, não {raw!r}")
    return value


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def env_flag(name: str, default: bool) -> bool:
    """``name`` from the environment as true/false (also 1/0, yes/no, on/off); anything else refuses to start."""
    raw = env.str(name, default=str(default)).strip()
    if raw.lower() not in _BOOLEANS:
        refuse(f"{name}: use true ou false, não {raw!r}")
    return _BOOLEANS[raw.lower()]


# Keys published with the project (the default, .env.example, docker-compose.yml): anyone who has
# read them can forge sessions, CSRF tokens and password-reset links.
PUBLIC_SECRET_KEYS = {"dev-insecure-change-me", "change-me-to-a-long-random-string", "change-me"}
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-change-me")
DEBUG = env.bool("DEBUG", default=False)
if not DEBUG and (not SECRET_KEY.strip() or SECRET_KEY in PUBLIC_SECRET_KEYS):
    refuse("SECRET_KEY não definida ou pública: defina uma chave aleatória própria (por exemplo"
           " python -c 'import secrets; print(secrets.token_urlsafe(50))') ou DEBUG=true em desenvolvimento")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS (the README's "In production" shows them set) ----------------------
# All off by default: the embedded default and local runs are plain HTTP.
SECURE_SSL_REDIRECT = env_flag("SECURE_SSL_REDIRECT", False)
# Load balancers and orchestrators probe the process itself, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/memory/health/$"]
SECURE_HSTS_SECONDS = env_seconds("SECURE_HSTS_SECONDS", 0, integer=True)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_flag("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_flag("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_flag("CSRF_COOKIE_SECURE", False)
# Behind a proxy that terminates TLS: the header it sets and its value for HTTPS, as
# "HTTP_X_FORWARDED_PROTO,https". Trust it only if the proxy always sets (or strips) it.
_proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="").strip()
SECURE_PROXY_SSL_HEADER = None
if _proxy_ssl_header:
    _header, _, _value = (part.strip() for part in _proxy_ssl_header.partition(","))
    if not re.fullmatch(r"HTTP_[A-Z0-9_]+", _header) or not _value or "," in _value:
        refuse(f"SECURE_PROXY_SSL_HEADER: use NOME,valor como HTTP_X_FORWARDED_PROTO,https, não {_proxy_ssl_header!r}")
    SECURE_PROXY_SSL_HEADER = (_header, _value)
USE_X_FORWARDED_HOST = env_flag("USE_X_FORWARDED_HOST", False)

# Content-Security-Policy (django-csp): nothing is loaded from elsewhere, no inline script runs,
# and the one inline style allowed is the <style> of drf-spectacular's swagger_ui.html (0.30.0),
# by its hash (tests/admin/test_e2e_admin.py sees a console error if that template changes).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='"],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "import_export",
    "django_celery_beat",
    "memory",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "memory.middleware.RequireMigratedDatabase",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "beecatalog.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = "beecatalog.wsgi.application"

# --- Database (L3, the source of truth) -----------------------------------
# Unset DATABASE_URL means a SQLite file: the zero-setup demo. Real use, the
# tests and CI use PostgreSQL through psycopg 3.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'beecatalog.sqlite3'}"),
}
# What a hung PostgreSQL can cost a request (docs/reliability.md): a new connection waits
# DB_CONNECT_TIMEOUT for the server (libpq waits 2 s at least), the check of a reused one
# DB_HEALTH_CHECK_TIMEOUT; a statement runs at most DB_STATEMENT_TIMEOUT (0: no limit), and the
# backend (memory/infra/postgresql) waits a little longer for the server to say so, then closes
# the connection as hung.
DB_CONNECT_TIMEOUT = env_seconds("DB_CONNECT_TIMEOUT", 2, minimum=1, integer=True)  # 0 would wait forever
DB_HEALTH_CHECK_TIMEOUT = env_seconds("DB_HEALTH_CHECK_TIMEOUT", 1.0, minimum=0.1)
DB_STATEMENT_TIMEOUT = env_seconds("DB_STATEMENT_TIMEOUT", 30.0)
DB_CONN_MAX_AGE = env_seconds("DB_CONN_MAX_AGE", 60, integer=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
else:
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "memory.infra.postgresql"  # Django's, every wait bounded
    DATABASES["default"].setdefault("CONN_MAX_AGE", DB_CONN_MAX_AGE)
    # A reused connection is checked before its first query of each request, so a restarted
    # server costs no request an error.
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # libpq parameters in DATABASE_URL's query string (?keepalives_idle=30) win over these.
    _libpq = DATABASES["default"].setdefault("OPTIONS", {})
    _libpq.setdefault("connect_timeout", DB_CONNECT_TIMEOUT)
    # A peer that stops acknowledging (its host frozen, the network cut) breaks the connection:
    # data unacknowledged for 10 s, or an idle connection unanswered 10 s + 3 probes 5 s apart.
    _libpq.setdefault("keepalives", 1)
    _libpq.setdefault("keepalives_idle", 10)
    _libpq.setdefault("keepalives_interval", 5)
    _libpq.setdefault("keepalives_count", 3)
    _libpq.setdefault("tcp_user_timeout", 10_000)  # milliseconds
    if DB_STATEMENT_TIMEOUT:
        # first, so that a "-c statement_timeout" of the URL's own options still decides
        _statement_timeout_ms = max(1, round(DB_STATEMENT_TIMEOUT * 1000))
        _libpq["options"] = f"-c statement_timeout={_statement_timeout_ms} {_libpq.get('options', '')}".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Caches: L1 (per process) and L2 (Redis, optional) --------------------
REDIS_URL = env("REDIS_URL", default="")
MEMORY_L1_TTL = env.int("MEMORY_L1_TTL", default=60)
MEMORY_REDIS_TIMEOUT = env.float("MEMORY_REDIS_TIMEOUT", default=0.25)

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "memory_l1": {
        "BACKEND": "memory.infra.cache_backends.LocalMemoryCache",
        "LOCATION": "memory-l1",
        "TIMEOUT": MEMORY_L1_TTL,
        "OPTIONS": {"MAX_ENTRIES": env.int("MEMORY_L1_MAX_ENTRIES", default=10000)},
    },
}
if REDIS_URL:
    CACHES["memory_l2"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "bcm",
        "TIMEOUT": None,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            "COMPRESSOR": "memory.infra.compressors.Lz4ReadingZstdCompressor",
            "SOCKET_CONNECT_TIMEOUT": MEMORY_REDIS_TIMEOUT,
            "SOCKET_TIMEOUT": MEMORY_REDIS_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {"health_check_interval": 30},
        },
    }

# --- The memory -------------------------------------------------------------
MEMORY_DEFAULT_TTL = env.int("MEMORY_DEFAULT_TTL", default=7_776_000)  # 90 days
MEMORY_MAX_PAYLOAD_BYTES = env.int("MEMORY_MAX_PAYLOAD_BYTES", default=262_144)
MEMORY_BACKUP_DIR = Path(env("MEMORY_BACKUP_DIR", default=str(BASE_DIR / "var" / "backups")))
# After a Redis failure, how long to wait before trying Redis again (seconds).
MEMORY_REDIS_RETRY_AFTER = env.float("MEMORY_REDIS_RETRY_AFTER", default=5.0)
# Hits are buffered in the process and sent to Redis this often (seconds).
MEMORY_HIT_BUFFER_SECONDS = env.float("MEMORY_HIT_BUFFER_SECONDS", default=1.0)
# Entry counts in stats need a full table scan: reuse them for this long (0: always fresh).
MEMORY_STATS_CACHE_SECONDS = env.float("MEMORY_STATS_CACHE_SECONDS", default=15.0)
# Hit counters kept in process (no Redis) are written to PostgreSQL at most this often.
MEMORY_LOCAL_COUNTER_FLUSH_INTERVAL = env.float("MEMORY_LOCAL_COUNTER_FLUSH_INTERVAL", default=30.0)

# --- Scheduled jobs (django-celery-beat; memory/schedules.py) -------------------
# Intervals in seconds, applied to the periodic tasks on every `migrate`.
MEMORY_PURGE_INTERVAL = env.int("MEMORY_PURGE_INTERVAL", default=3600)
MEMORY_PURGE_BATCH_SIZE = env.int("MEMORY_PURGE_BATCH_SIZE", default=5000)
MEMORY_COUNTER_FLUSH_INTERVAL = env.int("MEMORY_COUNTER_FLUSH_INTERVAL", default=60)
MEMORY_ROLLUP_INTERVAL = env.int("MEMORY_ROLLUP_INTERVAL", default=600)
MEMORY_BACKUP_INTERVAL = env.int("MEMORY_BACKUP_INTERVAL", default=86400)
# How many backup snapshots the scheduled backup keeps (the oldest go first).
MEMORY_BACKUP_KEEP = env.int("MEMORY_BACKUP_KEEP", default=7)

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
# No broker: tasks run eagerly in the calling process (the embedded default).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL or None)
# The Redis result store retries once, 0.2 s later, instead of Celery's 20 times a second: queueing
# a task with Redis down fails in well under a second (the API answers 503), not after ~19 s.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.2},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = env("TIME_ZONE", default="America/Sao_Paulo")

# --- Generation ---------------------------------------------------------------
LLM_PROVIDER = env("LLM_PROVIDER", default="template")
LLM_MODEL = env("LLM_MODEL", default="gpt-4o-mini")
# Any OpenAI-compatible server (OpenAI, a LiteLLM proxy, vLLM, Ollama) through the official SDK,
# one client (and connection pool) per process.
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default="https://api.openai.com/v1")
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
# Seconds to open a connection, and seconds to wait for the answer of a request.
LLM_CONNECT_TIMEOUT = env_seconds("LLM_CONNECT_TIMEOUT", 5.0, minimum=0.001)
LLM_TIMEOUT = env_seconds("LLM_TIMEOUT", 60.0, minimum=0.001)
# Requests per generation, retries included: the SDK retries 408, 409, 429, 5xx, timeouts and
# connection errors (back-off with jitter, honouring Retry-After up to 2 minutes); a malformed
# answer is asked for again within the same budget.
LLM_MAX_ATTEMPTS = env_whole("LLM_MAX_ATTEMPTS", 3, minimum=1, maximum=20)
# json_schema: a strict JSON schema built from the content schema (OpenAI, vLLM, recent Ollama);
# json_object: any JSON object, for servers without structured outputs.
LLM_RESPONSE_FORMATS = ("json_schema", "json_object")
LLM_RESPONSE_FORMAT = env.str("LLM_RESPONSE_FORMAT", default="json_schema").strip()
if LLM_RESPONSE_FORMAT not in LLM_RESPONSE_FORMATS:
    refuse(f"LLM_RESPONSE_FORMAT: use {' ou '.join(LLM_RESPONSE_FORMATS)}, não {LLM_RESPONSE_FORMAT!r}")
# Most tokens an answer may use (sent as max_completion_tokens); an answer cut there fails at once.
LLM_MAX_TOKENS = env_whole("LLM_MAX_TOKENS", 2048, minimum=1, maximum=1_000_000)
# Sent only when set: some models (reasoning ones) refuse any value but their own.
_temperature = env.str("LLM_TEMPERATURE", default="").strip()
LLM_TEMPERATURE = None
if _temperature:
    try:
        LLM_TEMPERATURE = float(_temperature)
    except ValueError:
        LLM_TEMPERATURE = math.nan
    if not 0 <= LLM_TEMPERATURE <= 2:
        refuse(f"LLM_TEMPERATURE: use um número de 0 a 2 (ou deixe vazia), não {_temperature!r}")
# Generations of one batch chunk that may run at once (threads) against a remote provider.
LLM_MAX_CONCURRENCY = env.int("LLM_MAX_CONCURRENCY", default=4)
# Single flight: how long a generation may hold a product's lock, and others wait for it.
MEMORY_GENERATION_LOCK_TIMEOUT = env.float("MEMORY_GENERATION_LOCK_TIMEOUT", default=180.0)
# USD per 1M tokens: prompt, cached prompt, completion. LLM_PRICES (JSON, {"model": [prompt,
# cached, completion]}) adds models or replaces these. A model without prices has an unknown cost
# (the stats say so and log a warning), never a default one.
LLM_PRICES_DEFAULT = {
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "template": (0.15, 0.075, 0.60),  # priced as gpt-4o-mini, so the demo shows a realistic figure
}
_prices_raw = env.str("LLM_PRICES", default="").strip()
try:
    _prices = json.loads(_prices_raw) if _prices_raw else {}
except ValueError:
    refuse(f"LLM_PRICES: JSON inválido, use {{\"modelo\": [prompt, prompt em cache, resposta]}}, não {_prices_raw!r}")
if not isinstance(_prices, dict):
    refuse(f"LLM_PRICES: use um objeto {{\"modelo\": [prompt, prompt em cache, resposta]}}, não {_prices_raw!r}")
for _model, _values in _prices.items():
    if not (isinstance(_values, list) and len(_values) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in _values)):
        refuse(f"LLM_PRICES: {_model!r} precisa de três preços não negativos em USD por 1M de tokens"
               f" (prompt, prompt em cache, resposta), em {_prices_raw!r}")
LLM_PRICES = {**LLM_PRICES_DEFAULT, **{model: tuple(values) for model, values in _prices.items()}}

# --- REST API (memory/api/) ------------------------------------------------------
# Largest request body the API reads, in bytes (also Django's form limit).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_048_576)
# Deepest nesting of objects and lists accepted in a JSON body.
MEMORY_API_MAX_JSON_DEPTH = env.int("MEMORY_API_MAX_JSON_DEPTH", default=32)
# How long a process keeps a token's user without asking PostgreSQL again; a change
# made through Django (token revoked, user deactivated) empties it everywhere at once.
API_TOKEN_CACHE_SECONDS = env.int("API_TOKEN_CACHE_SECONDS", default=60)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "memory.api.authentication.CachedTokenAuthentication",
        "memory.api.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["memory.api.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "memory.api.exceptions.exception_handler",
    # `?format=` is the export's own parameter, not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "BeeCatalog Memory API",
    "DESCRIPTION": "Memória de conteúdo de produtos gerado por IA: consulta, remoção, exportação e regeneração.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# Who may read GET /metrics: "staff" (a staff user, by token or session),
# "token" (any authenticated user) or "anonymous" (anyone who reaches it).
METRICS_ALLOW = env.str("METRICS_ALLOW", default="staff")
if METRICS_ALLOW not in ("staff", "token", "anonymous"):
    refuse(f"METRICS_ALLOW: use staff, token ou anonymous, não {METRICS_ALLOW!r}")
# Several gunicorn workers: an empty directory shared by them (prometheus_client
# reads the same variable from the environment), wiped before each start.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")

# --- Internationalization -----------------------------------------------------
LANGUAGE_CODE = "pt-br"
LANGUAGES = [("pt-br", "Português (Brasil)"), ("en", "English")]
# locale/ holds the project's own catalogs, which ``makemessages`` rewrites; third_party_locale/ holds
# pt-BR translations for the packages' own strings (django-celery-beat ships no pt-BR catalog,
# django-import-export a partial one). makemessages leaves that folder alone because it is not named
# "locale" (a folder named so inside beecatalog/ would receive this package's strings and lose the
# rest as obsolete). Both outrank every package's catalog, locale/ first.
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "beecatalog" / "third_party_locale"]
TIME_ZONE = env("TIME_ZONE", default="America/Sao_Paulo")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# Serve the apps' static files (admin, docs UI, dashboard) straight from their
# packages, so that `runserver` and gunicorn work before any `collectstatic`.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(levelname)s] %(message)s"}},
    "filters": {"debug_off": {"()": "django.utils.log.RequireDebugFalse"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # A request's unhandled exception, with its traceback, on stderr: Django's own console
        # handler prints it only with DEBUG on, and mail_admins sends nothing without ADMINS.
        "server_errors": {
            "class": "logging.StreamHandler", "formatter": "plain", "level": "ERROR", "filters": ["debug_off"],
        },
    },
    "loggers": {
        "memory": {"handlers": ["console"], "level": env("MEMORY_LOG_LEVEL", default="INFO"), "propagate": True},
        "django.request": {"handlers": ["server_errors"]},
    },
}
