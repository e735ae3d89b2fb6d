"""BeeCatalog Memory settings.

Every setting that changes between machines is read here, once, from the
environment (see ``.env.example`` and the README's configuration table).
Modules read ``django.conf.settings``, never ``os.environ``.
"""
import math
import os
import re
from pathlib import Path
from urllib.parse import quote

import environ
from celery.app.backends import BACKEND_ALIASES
from csp.constants import NONE, SELF
from kombu.transport import TRANSPORT_ALIASES

from beecatalog import environment as read, redis_cache

BASE_DIR = Path(__file__).resolve().parent.parent

# What the LOGGING block reads; every other variable goes through beecatalog.environment.
env = environ.Env()

# .env fills only what the environment leaves unset, so a value set by the process's own
# environment (docker-compose.yml's `environment:` inside the containers) wins over a .env
# written for the host. DOTENV_PATH names another file; empty, none is read.
DOTENV_PATH = read.text("DOTENV_PATH", str(BASE_DIR / ".env"))
if DOTENV_PATH:
    if read.is_set("DOTENV_PATH") and not Path(DOTENV_PATH).is_file():
        read.refuse(f"DOTENV_PATH: arquivo não encontrado, não {DOTENV_PATH!r} (vazio: nenhum .env é lido)")
    environ.Env.read_env(DOTENV_PATH, overwrite=False)


# Keys published with the project (the default, .env.example, docker-compose.yml): anyone who has
# read them can forge sessions, CSRF tokens and password-reset links.
PUBLIC_SECRET_KEYS = {"dev-insecure-change-me", "change-me-to-a-long-random-string", "change-me"}
SECRET_KEY = read.text("SECRET_KEY", "dev-insecure-change-me")
DEBUG = read.flag("DEBUG", False)
if not DEBUG and (not SECRET_KEY.strip() or SECRET_KEY in PUBLIC_SECRET_KEYS):
    read.refuse("SECRET_KEY não definida ou pública: defina uma chave aleatória própria (por exemplo"
                " python -c 'import secrets; print(secrets.token_urlsafe(50))') ou DEBUG=true em desenvolvimento")
ALLOWED_HOSTS = read.items("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = read.origins("CSRF_TRUSTED_ORIGINS")

# --- HTTPS (the README's "In production" shows them set) ----------------------
# All off by default: the embedded default and local runs are plain HTTP.
SECURE_SSL_REDIRECT = read.flag("SECURE_SSL_REDIRECT", False)
# Load balancers and orchestrators probe the process itself, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/memory/health/$"]
SECURE_HSTS_SECONDS = read.whole("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = read.flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = read.flag("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = read.flag("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = read.flag("CSRF_COOKIE_SECURE", False)
# Behind a proxy that terminates TLS: the header it sets and its value for HTTPS, as
# "HTTP_X_FORWARDED_PROTO,https". Trust it only if the proxy always sets (or strips) it.
_proxy_ssl_header = read.text("SECURE_PROXY_SSL_HEADER").strip()
SECURE_PROXY_SSL_HEADER = None
if _proxy_ssl_header:
    _header, _, _value = (part.strip() for part in _proxy_ssl_header.partition(","))
    if not re.fullmatch(r"HTTP_[A-Z0-9_]+", _header) or not _value or "," in _value:
        read.refuse(f"SECURE_PROXY_SSL_HEADER: use NOME,valor como HTTP_X_FORWARDED_PROTO,https, não {_proxy_ssl_header!r}")
    SECURE_PROXY_SSL_HEADER = (_header, _value)
USE_X_FORWARDED_HOST = read.flag("USE_X_FORWARDED_HOST", False)

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
    "memory.middleware.ReadYourWrites",
    "django.middleware.security.SecurityMiddleware",
    "memory.middleware.ContentSecurityPolicy",
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
    "default": read.database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'beecatalog.sqlite3'}"),
}
# What a hung PostgreSQL can cost a request (docs/reliability.md): a new connection waits
# DB_CONNECT_TIMEOUT for the server (libpq waits 2 s at least), the check of a reused one
# DB_HEALTH_CHECK_TIMEOUT; a statement runs at most DB_STATEMENT_TIMEOUT (0: no limit), and the
# backend (memory/infra/postgresql) waits a little longer for the server to say so, then closes
# the connection as hung.
DB_CONNECT_TIMEOUT = read.whole("DB_CONNECT_TIMEOUT", 2, minimum=1)  # 0 would wait forever
DB_HEALTH_CHECK_TIMEOUT = read.number("DB_HEALTH_CHECK_TIMEOUT", 1.0, minimum=0.1)
DB_STATEMENT_TIMEOUT = read.number("DB_STATEMENT_TIMEOUT", 30.0)
DB_CONN_MAX_AGE = read.whole("DB_CONN_MAX_AGE", 60)
def _bounded(config: dict) -> dict:
    """A PostgreSQL entry of DATABASES on the backend that bounds every wait (docs/reliability.md)."""
    if config["ENGINE"] == "django.db.backends.postgresql":
        config["ENGINE"] = "memory.infra.postgresql"  # Django's, every wait bounded
    config.setdefault("CONN_MAX_AGE", DB_CONN_MAX_AGE)
    # A reused connection is checked before its first query of each request, so a restarted
    # server costs no request an error.
    config.setdefault("CONN_HEALTH_CHECKS", True)
    # libpq parameters in the URL's query string (?keepalives_idle=30) win over these.
    libpq = config.setdefault("OPTIONS", {})
    libpq.setdefault("connect_timeout", DB_CONNECT_TIMEOUT)
    # A peer that stops acknowledging (its host frozen, the network cut) breaks the connection:
    # data unacknowledged for 10 s, or an idle connection unanswered 10 s + 3 probes 5 s apart.
    libpq.setdefault("keepalives", 1)
    libpq.setdefault("keepalives_idle", 10)
    libpq.setdefault("keepalives_interval", 5)
    libpq.setdefault("keepalives_count", 3)
    libpq.setdefault("tcp_user_timeout", 10_000)  # milliseconds
    if DB_STATEMENT_TIMEOUT:
        # first, so that a "-c statement_timeout" of the URL's own options still decides
        statement_timeout_ms = max(1, round(DB_STATEMENT_TIMEOUT * 1000))
        libpq["options"] = f"-c statement_timeout={statement_timeout_ms} {libpq.get('options', '')}".strip()
    return config


if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
else:
    _bounded(DATABASES["default"])

# Streaming replicas of the primary (README, "Read replicas"): the memory's reads go to one of
# them (memory/infra/replicas.py), writes and reads right after a write to the primary.
_replicas = read.databases("DATABASE_REPLICA_URLS")
if _replicas and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    read.refuse("DATABASE_REPLICA_URLS: réplicas de leitura exigem PostgreSQL em DATABASE_URL, não SQLite")
DATABASE_REPLICAS = []
for _number, _replica in enumerate(_replicas, start=1):
    _alias = f"replica_{_number}"
    # the test runner makes no database of its own for a replica: it reads the test database
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[_alias] = _bounded(_replica)
    DATABASE_REPLICAS.append(_alias)
DATABASE_ROUTERS = ["memory.infra.replicas.ReplicaRouter"] if DATABASE_REPLICAS else []
# How long a replica that could not be reached is skipped before it is tried again.
MEMORY_REPLICA_RETRY_SECONDS = read.number("MEMORY_REPLICA_RETRY_SECONDS", 5.0, minimum=0.1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Caches: L1 (per process) and L2 (Redis, optional) --------------------
# One Redis mode at a time: REDIS_URL (one server), REDIS_SENTINELS + REDIS_SENTINEL_MASTER
# (Sentinel: REDIS_URL gives only the database and the password) or REDIS_CLUSTER_NODES
# (Redis Cluster). memory.infra.redis's system check says the same to manage.py.
REDIS_URL = read.redis_url("REDIS_URL")
REDIS_PASSWORD = read.text("REDIS_PASSWORD")
REDIS_SENTINELS = read.hosts("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = read.text("REDIS_SENTINEL_MASTER").strip()
# The sentinels' own password (their requirepass), when they ask for one; the master's is REDIS_PASSWORD.
REDIS_SENTINEL_PASSWORD = read.text("REDIS_SENTINEL_PASSWORD")
REDIS_CLUSTER_NODES = read.hosts("REDIS_CLUSTER_NODES", "10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379")
if _redis_conflict := read.redis_mode_conflict(REDIS_URL, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_CLUSTER_NODES):
    read.refuse(_redis_conflict)
REDIS_MODE = (redis_cache.SENTINEL if REDIS_SENTINELS else redis_cache.CLUSTER if REDIS_CLUSTER_NODES
              else redis_cache.SINGLE if REDIS_URL else "")
MEMORY_L1_TTL = read.whole("MEMORY_L1_TTL", 60)  # 0: no L1 copies
MEMORY_REDIS_TIMEOUT = read.number("MEMORY_REDIS_TIMEOUT", 0.25, minimum=0.01)

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "memory_l1": {
        "BACKEND": "memory.infra.cache_backends.LocalMemoryCache",
        "LOCATION": "memory-l1",
        "TIMEOUT": MEMORY_L1_TTL,
        "OPTIONS": {"MAX_ENTRIES": read.whole("MEMORY_L1_MAX_ENTRIES", 10000, minimum=1, unit="entradas")},
    },
}
if REDIS_MODE:
    CACHES["memory_l2"] = redis_cache.memory_l2(
        REDIS_MODE, timeout=MEMORY_REDIS_TIMEOUT, url=REDIS_URL, password=REDIS_PASSWORD,
        sentinels=REDIS_SENTINELS, master=REDIS_SENTINEL_MASTER, sentinel_password=REDIS_SENTINEL_PASSWORD,
        cluster_nodes=REDIS_CLUSTER_NODES,
    )

# --- The memory -------------------------------------------------------------
MEMORY_DEFAULT_TTL = read.whole("MEMORY_DEFAULT_TTL", 7_776_000, minimum=1, example="90 dias = 7776000")
MEMORY_MAX_PAYLOAD_BYTES = read.whole("MEMORY_MAX_PAYLOAD_BYTES", 262_144, minimum=1, unit="bytes")
# Versions of an entry's content kept (the current one included); the oldest go first.
MEMORY_MAX_VERSIONS = read.whole("MEMORY_MAX_VERSIONS", 20, minimum=1, unit="versões")
MEMORY_BACKUP_DIR = Path(read.text("MEMORY_BACKUP_DIR", str(BASE_DIR / "var" / "backups")))
# Limits on a file read by an import, a restore or a catalog run (a gzip, an XLSX are counted
# decompressed), so that a hostile file is refused in bounded memory and time.
# All of a file's content; an export of 1,000,000 entries is ~800 MB.
MEMORY_IMPORT_MAX_BYTES = read.whole("MEMORY_IMPORT_MAX_BYTES", 2 * 1024**3, minimum=1, unit="bytes")
# One line (JSONL, CSV) or one record (a CSV row over several lines, an object of a JSON array).
MEMORY_IMPORT_MAX_LINE_BYTES = read.whole("MEMORY_IMPORT_MAX_LINE_BYTES", 8 * 1024**2, minimum=1, unit="bytes")
# One CSV field (characters), one XLSX cell or XML text (bytes); payload + escaping fits.
MEMORY_IMPORT_MAX_FIELD_BYTES = read.whole("MEMORY_IMPORT_MAX_FIELD_BYTES", 2 * 1024**2, minimum=1, unit="bytes")
# A file uploaded to the admin's import, which reads it whole and previews every row in one request.
MEMORY_IMPORT_ADMIN_MAX_BYTES = read.whole("MEMORY_IMPORT_ADMIN_MAX_BYTES", 10 * 1024**2, minimum=1, unit="bytes")
# After a Redis failure, how long to wait before trying Redis again (seconds).
MEMORY_REDIS_RETRY_AFTER = read.number("MEMORY_REDIS_RETRY_AFTER", 5.0)
# Hits are buffered in the process and sent to Redis this often (seconds).
MEMORY_HIT_BUFFER_SECONDS = read.number("MEMORY_HIT_BUFFER_SECONDS", 1.0, minimum=0.01)
# Entry counts in stats need a full table scan: reuse them for this long (0: always fresh).
MEMORY_STATS_CACHE_SECONDS = read.number("MEMORY_STATS_CACHE_SECONDS", 15.0)
# Hit counters kept in process (no Redis) are written to PostgreSQL at most this often.
MEMORY_LOCAL_COUNTER_FLUSH_INTERVAL = read.number("MEMORY_LOCAL_COUNTER_FLUSH_INTERVAL", 30.0)

# --- Scheduled jobs (django-celery-beat; memory/schedules.py) -------------------
# Intervals in seconds, applied to the periodic tasks on every `migrate`.
MEMORY_PURGE_INTERVAL = read.whole("MEMORY_PURGE_INTERVAL", 3600, minimum=1)
MEMORY_PURGE_BATCH_SIZE = read.whole("MEMORY_PURGE_BATCH_SIZE", 5000, minimum=1, unit="linhas")
MEMORY_COUNTER_FLUSH_INTERVAL = read.whole("MEMORY_COUNTER_FLUSH_INTERVAL", 60, minimum=1)
# Partitions by expiry (memory/engine/partitions.py, docs/reliability.md): "monthly" makes the
# entries a table range-partitioned on expires_at once `manage_memory partition` converted it;
# the scheduled purge then drops whole expired months and keeps MEMORY_PARTITIONS_AHEAD months
# ahead of the current one (keep it at least MEMORY_DEFAULT_TTL in months: the DEFAULT partition
# stays empty). "off": a plain table.
MEMORY_PARTITION_MODES = ("off", "monthly")
MEMORY_PARTITION_BY_EXPIRY = read.choice("MEMORY_PARTITION_BY_EXPIRY", MEMORY_PARTITION_MODES, "off")
MEMORY_PARTITIONS_AHEAD = read.whole("MEMORY_PARTITIONS_AHEAD", 3, minimum=1, maximum=120, unit="meses")
MEMORY_ROLLUP_INTERVAL = read.whole("MEMORY_ROLLUP_INTERVAL", 600, minimum=1)
MEMORY_BACKUP_INTERVAL = read.whole("MEMORY_BACKUP_INTERVAL", 86400, minimum=1)
# How many backup snapshots the scheduled backup keeps (the oldest go first).
MEMORY_BACKUP_KEEP = read.whole("MEMORY_BACKUP_KEEP", 7, minimum=1, unit="snapshots")
# How often the scheduled job checks the open Batch API runs and ingests the finished ones.
MEMORY_BATCH_INGEST_INTERVAL = read.whole("MEMORY_BATCH_INGEST_INTERVAL", 300, minimum=1)
# Refresh-ahead (memory/services/refresh.py): how often the job runs, how close to its expiry an
# entry is refreshed, the tokens one run may spend (0: the job refreshes nothing), and how hot an
# entry must be (its hits decayed by half every MEMORY_HOTNESS_HALF_LIFE_SECONDS) to be refreshed.
MEMORY_REFRESH_AHEAD_INTERVAL = read.whole("MEMORY_REFRESH_AHEAD_INTERVAL", 900, minimum=1)
MEMORY_REFRESH_AHEAD_SECONDS = read.whole("MEMORY_REFRESH_AHEAD_SECONDS", 86400, minimum=0,
                                          example="1 dia = 86400")
MEMORY_REFRESH_TOKEN_BUDGET = read.whole("MEMORY_REFRESH_TOKEN_BUDGET", 50_000, minimum=0, unit="tokens",
                                         example="0: não renova nada")
MEMORY_REFRESH_MIN_HOTNESS = read.number("MEMORY_REFRESH_MIN_HOTNESS", 1.0, minimum=0, unit="acertos",
                                         example="acertos decaídos; 1 = cerca de um acerto na última meia-vida")
MEMORY_HOTNESS_HALF_LIFE_SECONDS = read.number("MEMORY_HOTNESS_HALF_LIFE_SECONDS", 86400.0, minimum=1,
                                               example="1 dia = 86400")

# --- Celery -------------------------------------------------------------------
# The broker defaults to the memory's Redis: REDIS_URL, or in Sentinel mode the sentinels (Kombu's
# sentinel:// transport, each sentinel a URL, the master's name a transport option). A Redis
# Cluster cannot be Celery's broker: in cluster mode set CELERY_BROKER_URL to a Redis of its own
# or to RabbitMQ (amqp://); unset, tasks run eagerly in the calling process.
if REDIS_MODE == redis_cache.SENTINEL:
    _password = REDIS_PASSWORD or redis_cache.url_password(REDIS_URL)
    _auth = f":{quote(_password, safe='')}@" if _password else ""
    _default_broker = ";".join(f"sentinel://{_auth}{host}:{port}/{redis_cache.url_database(REDIS_URL)}"
                               for host, port in REDIS_SENTINELS)
else:
    _default_broker = REDIS_URL
CELERY_BROKER_URL = read.celery_url("CELERY_BROKER_URL", _default_broker, TRANSPORT_ALIASES)
# No broker: tasks run eagerly in the calling process (the embedded default).
CELERY_TASK_ALWAYS_EAGER = read.flag("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
# Results go where the tasks go: the broker's Redis, or with RabbitMQ back over AMQP (rpc://).
CELERY_RESULT_BACKEND = read.celery_url(
    "CELERY_RESULT_BACKEND", "rpc://" if CELERY_BROKER_URL.startswith(("amqp", "pyamqp")) else CELERY_BROKER_URL,
    BACKEND_ALIASES) or None
# The Redis result store retries once, 0.2 s later, instead of Celery's 20 times a second: queueing
# a task with Redis down fails in well under a second (the API answers 503), not after ~19 s.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.2},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {}
# A sentinel:// broker or result store asks the sentinels for this master (REDIS_SENTINEL_MASTER).
for _url, _options in ((CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS),
                       (CELERY_RESULT_BACKEND or "", CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS)):
    if _url.startswith("sentinel://"):
        if not REDIS_SENTINEL_MASTER:
            read.refuse(f"{'CELERY_BROKER_URL' if _options is CELERY_BROKER_TRANSPORT_OPTIONS else 'CELERY_RESULT_BACKEND'}:"
                        " sentinel:// precisa de REDIS_SENTINEL_MASTER (o nome do master que os sentinels vigiam)")
        _options["master_name"] = REDIS_SENTINEL_MASTER
        if REDIS_SENTINEL_PASSWORD:
            _options["sentinel_kwargs"] = {"password": REDIS_SENTINEL_PASSWORD}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
TIME_ZONE = read.time_zone("TIME_ZONE", "America/Sao_Paulo")  # Django's too (Internationalization)
CELERY_TIMEZONE = TIME_ZONE

# --- Generation ---------------------------------------------------------------
# The providers memory.providers.get_provider builds.
LLM_PROVIDERS = ("template", "openai")
LLM_PROVIDER = read.choice("LLM_PROVIDER", LLM_PROVIDERS, "template")
LLM_MODEL = read.text("LLM_MODEL", "gpt-4o-mini").strip()
# Any OpenAI-compatible server (OpenAI, a LiteLLM proxy, vLLM, Ollama) through the official SDK,
# one client (and connection pool) per process.
OPENAI_BASE_URL = read.http_url("OPENAI_BASE_URL", "https://api.openai.com/v1")
OPENAI_API_KEY = read.text("OPENAI_API_KEY").strip()
if LLM_PROVIDER == "openai":
    if not LLM_MODEL:
        read.refuse("LLM_MODEL: vazio; com LLM_PROVIDER=openai diga o modelo, como gpt-4o-mini")
    # OpenAI's own API answers 401 to every request without a key; a compatible server of your
    # own (Ollama, vLLM) may need none.
    if not OPENAI_API_KEY and OPENAI_BASE_URL.rstrip("/").startswith("https://api.openai.com"):
        read.refuse("OPENAI_API_KEY: vazia; com LLM_PROVIDER=openai e OPENAI_BASE_URL da OpenAI defina a chave"
                    " da API (ou LLM_PROVIDER=template para gerar sem LLM)")
# Seconds to open a connection, and seconds to wait for the answer of a request.
LLM_CONNECT_TIMEOUT = read.number("LLM_CONNECT_TIMEOUT", 5.0, minimum=0.001)
LLM_TIMEOUT = read.number("LLM_TIMEOUT", 60.0, minimum=0.001)
# Requests per generation, retries included: the SDK retries 408, 409, 429 (not an account out of
# quota), 5xx, timeouts and connection errors (back-off with jitter, honouring Retry-After up to
# 2 minutes); a malformed answer is asked for again within the same budget.
LLM_MAX_ATTEMPTS = read.whole("LLM_MAX_ATTEMPTS", 3, minimum=1, maximum=20, unit="tentativas")
# json_schema: a strict JSON schema built from the content schema (OpenAI, vLLM, recent Ollama);
# json_object: any JSON object, for servers without structured outputs.
LLM_RESPONSE_FORMATS = ("json_schema", "json_object")
LLM_RESPONSE_FORMAT = read.choice("LLM_RESPONSE_FORMAT", LLM_RESPONSE_FORMATS, "json_schema")
# Most tokens an answer may use (sent as max_completion_tokens); an answer cut there fails at once.
LLM_MAX_TOKENS = read.whole("LLM_MAX_TOKENS", 2048, minimum=1, maximum=1_000_000, unit="tokens")
# Sent only when set: some models (reasoning ones) refuse any value but their own.
LLM_TEMPERATURE = (read.number("LLM_TEMPERATURE", 0.0, minimum=0, maximum=2, unit="",
                               example="ou deixe vazia para não enviar")
                   if read.text("LLM_TEMPERATURE").strip() else None)
# Generations of one batch chunk that may run at once (threads) against a remote provider.
LLM_MAX_CONCURRENCY = read.whole("LLM_MAX_CONCURRENCY", 4, minimum=1, unit="gerações")
# One rate limit for every process and worker together (kept in Redis; per process while Redis is
# absent or down): requests (retries included) and tokens that may start in any 60-second window;
# 0: no limit. The defaults are OpenAI's first usage tier for gpt-4o-mini: set your account's.
# A request reserves its size (4 bytes a token) + LLM_MAX_TOKENS, corrected to the usage it reports.
LLM_RPM = read.whole("LLM_RPM", 500, minimum=0, unit="requisições por minuto", example="0: sem limite")
LLM_TPM = read.whole("LLM_TPM", 200_000, minimum=0, unit="tokens por minuto", example="0: sem limite")
if 0 < LLM_TPM < LLM_MAX_TOKENS:
    read.refuse(f"LLM_TPM: {read.text('LLM_TPM').strip()!r} tokens por minuto não comportam uma chamada de"
                f" LLM_MAX_TOKENS = {LLM_MAX_TOKENS}; use 0 (sem limite) ou pelo menos {LLM_MAX_TOKENS}")
# The longest a request waits for its place under the limit; one that would wait longer is not made
# (the generation fails as unavailable, nothing paid).
LLM_RATE_MAX_WAIT = read.number("LLM_RATE_MAX_WAIT", 120.0, minimum=0)
# Circuit breaker on the provider, shared by every process through Redis: an account out of quota
# (429 insufficient_quota) or LLM_BREAKER_FAILURES 429/5xx answers in a row stop every call for
# LLM_BREAKER_COOLDOWN seconds; then one call tests the provider, and its success resumes the rest.
LLM_BREAKER_FAILURES = read.whole("LLM_BREAKER_FAILURES", 5, minimum=1, unit="respostas")
LLM_BREAKER_COOLDOWN = read.number("LLM_BREAKER_COOLDOWN", 60.0, minimum=0.001)
# Single flight: how long a generation may hold a product's lock, and others wait for it.
MEMORY_GENERATION_LOCK_TIMEOUT = read.number("MEMORY_GENERATION_LOCK_TIMEOUT", 180.0, minimum=1)
# Variant families (memory/services/families.py): the fields naming a product's family (the first
# one present wins), the fields that tell its variants apart (everything else is shared), and how
# a variant's content is made from its family's base: derive (no call) or ask (a short call).
MEMORY_FAMILY_FIELDS = read.items("MEMORY_FAMILY_FIELDS", ["parent_sku", "item_group_id", "grupo"])
MEMORY_VARIANT_ATTRIBUTES = read.items("MEMORY_VARIANT_ATTRIBUTES", [
    "color", "cor", "size", "tamanho", "voltage", "voltagem", "flavor", "sabor", "capacity", "capacidade",
])
MEMORY_FAMILY_MODES = ("derive", "ask")
MEMORY_FAMILY_MODE = read.choice("MEMORY_FAMILY_MODE", MEMORY_FAMILY_MODES, "derive")
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
_PRICES_FORM = '{"modelo": [prompt, prompt em cache, resposta]}'
_prices = read.json_object("LLM_PRICES", _PRICES_FORM)
for _model, _values in _prices.items():
    if not (isinstance(_values, list) and len(_values) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in _values)):
        read.refuse(f"LLM_PRICES: {_model!r} precisa de três preços não negativos em USD por 1M de tokens"
                    f" (prompt, prompt em cache, resposta), em {read.text('LLM_PRICES').strip()!r}")
LLM_PRICES = {**LLM_PRICES_DEFAULT, **{model: tuple(values) for model, values in _prices.items()}}
# What the Batch API's tokens cost, as a fraction of the direct price (OpenAI bills a batch at half):
# the factor every cost estimate of a `generate_content --batch-api` run is multiplied by.
LLM_BATCH_DISCOUNT = read.number("LLM_BATCH_DISCOUNT", 0.5, minimum=0, maximum=1, unit="",
                                 example="a fração do preço normal; a OpenAI cobra metade: 0.5")

# --- REST API (memory/api/) ------------------------------------------------------
# Largest request body the API reads, in bytes (also Django's form limit).
DATA_UPLOAD_MAX_MEMORY_SIZE = read.whole("DATA_UPLOAD_MAX_MEMORY_SIZE", 1_048_576, minimum=1, unit="bytes")
# Deepest nesting of objects and lists accepted in a JSON body.
MEMORY_API_MAX_JSON_DEPTH = read.whole("MEMORY_API_MAX_JSON_DEPTH", 32, minimum=1, unit="níveis")
# What one GraphQL document (/api/graphql/) may ask; over any of them it is refused with a GraphQL
# error before it is validated or run. Every field counts, introspection's (__type, ofType) too.
MEMORY_GRAPHQL_MAX_QUERY_LENGTH = read.whole("MEMORY_GRAPHQL_MAX_QUERY_LENGTH", 20_000, minimum=1, unit="caracteres")
MEMORY_GRAPHQL_MAX_TOKENS = read.whole("MEMORY_GRAPHQL_MAX_TOKENS", 2_000, minimum=1, unit="tokens")
MEMORY_GRAPHQL_MAX_DEPTH = read.whole("MEMORY_GRAPHQL_MAX_DEPTH", 10, minimum=1, unit="níveis")
MEMORY_GRAPHQL_MAX_FIELDS = read.whole("MEMORY_GRAPHQL_MAX_FIELDS", 300, minimum=1, unit="campos")
MEMORY_GRAPHQL_MAX_ALIASES = read.whole("MEMORY_GRAPHQL_MAX_ALIASES", 30, minimum=0, unit="apelidos")
# How long a process keeps a token's user without asking PostgreSQL again; a change
# made through Django (token revoked, user deactivated) empties it everywhere at once.
API_TOKEN_CACHE_SECONDS = read.whole("API_TOKEN_CACHE_SECONDS", 60)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "memory.api.authentication.CachedTokenAuthentication",
        "memory.api.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["memory.api.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "memory.api.negotiation.JSONFirstNegotiation",
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
METRICS_ALLOW = read.choice("METRICS_ALLOW", ("staff", "token", "anonymous"), "staff")
# The Celery worker's own /metrics (what its processes count: the generations it runs, their
# failures and tokens, refresh-ahead's), for a second Prometheus target: the TCP port (0: not
# served) and the address it listens on. It asks for no credentials: keep it on loopback or on a
# private network. With the prefork pool its processes add up in PROMETHEUS_MULTIPROC_DIR.
METRICS_WORKER_PORT = read.whole("METRICS_WORKER_PORT", 0, minimum=0, maximum=65535, unit="",
                                 example="0 desliga; por exemplo 9540")
METRICS_WORKER_ADDR = read.text("METRICS_WORKER_ADDR", "127.0.0.1").strip() or "127.0.0.1"
# Several gunicorn workers: a directory shared by them (prometheus_client reads the same
# variable from the environment), emptied by gunicorn's master before each start
# (gunicorn.conf.py). prometheus_client writes there from the first series it defines: a
# folder missing or read-only would stop every process with a traceback, hence the check here.
PROMETHEUS_MULTIPROC_DIR = read.text("PROMETHEUS_MULTIPROC_DIR").strip()
if not PROMETHEUS_MULTIPROC_DIR:
    # Empty means one process: prometheus_client would take a variable set to "" for a folder
    # (the current one) and write its files there.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
if PROMETHEUS_MULTIPROC_DIR and not (Path(PROMETHEUS_MULTIPROC_DIR).is_dir()
                                     and os.access(PROMETHEUS_MULTIPROC_DIR, os.W_OK | os.X_OK)):
    read.refuse(f"PROMETHEUS_MULTIPROC_DIR: use uma pasta existente e gravável (mkdir -p {PROMETHEUS_MULTIPROC_DIR}),"
                f" ou deixe vazio com um só processo, não {PROMETHEUS_MULTIPROC_DIR!r}")

# --- Internationalization -----------------------------------------------------
LANGUAGE_CODE = "pt-br"
LANGUAGES = [("pt-br", "Português (Brasil)"), ("en", "English")]
# locale/ holds the project's own catalogs, which ``makemessages`` rewrites; third_party_locale/ holds
# pt-BR translations for the packages' own strings (django-celery-beat ships no pt-BR catalog,
# django-import-export a partial one). makemessages leaves that folder alone because it is not named
# "locale" (a folder named so inside beecatalog/ would receive this package's strings and lose the
# rest as obsolete). Both outrank every package's catalog, locale/ first.
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "beecatalog" / "third_party_locale"]
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

# Read again by LOGGING below, as django-environ reads it: refused here if logging cannot use it.
MEMORY_LOG_LEVEL = read.choice("MEMORY_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "INFO")

# "text" for people, "json" for log shippers: one object per line (beecatalog/logs.py), in the
# web processes, the commands and the Celery worker and beat (beecatalog/celery.py).
MEMORY_LOG_FORMAT = read.choice("MEMORY_LOG_FORMAT", ("text", "json"), "text")
_LOG_FORMATTER = "json" if MEMORY_LOG_FORMAT == "json" else "plain"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "[%(levelname)s] %(message)s"},
        "json": {"()": "beecatalog.logs.JsonFormatter"},
    },
    "filters": {"debug_off": {"()": "django.utils.log.RequireDebugFalse"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": _LOG_FORMATTER},
        # A request's unhandled exception, with its traceback, on stderr: Django's own console
        # handler prints it only with DEBUG on, and mail_admins sends nothing without ADMINS.
        "server_errors": {
            "class": "logging.StreamHandler", "formatter": _LOG_FORMATTER, "level": "ERROR",
            "filters": ["debug_off"],
        },
    },
    "loggers": {
        # Its own handler: root has none outside Celery. In a worker or beat, whose root handler
        # prints every line, beecatalog/celery.py removes it (else each line shows twice); the
        # commands choose the level for their run from their -v (memory.management.terminal).
        "memory": {"handlers": ["console"], "level": env("MEMORY_LOG_LEVEL", default="INFO"), "propagate": True},
        "django.request": {"handlers": ["server_errors"]},
    },
}
