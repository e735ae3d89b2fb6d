import uuid
from urllib.parse import quote

import fakeredis
import kombu.pools
import psycopg
import pytest
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from psycopg import sql

from beecatalog.celery import app as celery_app
from memory.engine import runtime
from memory.engine.coherence import wait_until_subscribed
from memory.providers.openai import reset_clients
from memory.tasks import generate_main_content_task

from tests.helpers import ARTIFACTS, BROWSER_FLAGS, CHROMEDRIVER, CHROMIUM, l2_caches as _l2_caches, token_client
from tests.providers.fake_openai import FakeOpenAI, FullBacklog
from tests.servers import RedisServer


def _redis_configured() -> bool:
    return "memory_l2" in settings.CACHES


@pytest.fixture(autouse=True)
def clean_memory():
    """Every test starts with empty L1 and L2, Redis reachable, no pending counts, and the
    background threads running (a test may have stopped them)."""
    runtime.start_background_threads()
    if _redis_configured():
        # L1 is read only while this process hears invalidations; subscribing empties it.
        assert wait_until_subscribed(10), "the L1 invalidation listener could not subscribe"
    caches["memory_l1"].clear()
    if _redis_configured():
        caches["memory_l2"].client.get_client(write=True).flushdb()
    runtime.reset_process_state()
    yield
    runtime.reset_process_state()


@pytest.fixture
def redis_client():
    if not _redis_configured():
        pytest.skip("REDIS_URL is not set")
    return caches["memory_l2"].client.get_client(write=True)


@pytest.fixture
def no_redis():
    """The engine with no REDIS_URL at all: L1 + L3."""
    cache_settings = {k: v for k, v in settings.CACHES.items() if k != "memory_l2"}
    with override_settings(CACHES=cache_settings):
        runtime.reset_process_state()
        yield
    runtime.reset_process_state()


@pytest.fixture
def dead_redis():
    """REDIS_URL points at a port where nothing listens."""
    with override_settings(CACHES=_l2_caches({}, "redis://127.0.0.1:1/0")):
        runtime.reset_process_state()
        yield
    runtime.reset_process_state()


@pytest.fixture
def flaky_redis():
    """A fake Redis server the test can take down (``server.connected = False``) and bring back."""
    # A URL of its own: django-redis keeps one connection pool per URL, which would
    # otherwise bind every later test to the first test's server.
    server = fakeredis.FakeServer()
    options = {"CONNECTION_POOL_KWARGS": {"connection_class": fakeredis.FakeRedisConnection, "server": server}}
    with override_settings(CACHES=_l2_caches(options, f"redis://fake-{uuid.uuid4().hex[:8]}:6379/0"),
                           MEMORY_REDIS_RETRY_AFTER=0.0, MEMORY_HIT_BUFFER_SECONDS=0.05):
        runtime.reset_process_state()
        yield server
    runtime.reset_process_state()


@pytest.fixture
def process_env():
    """Environment for a child process (``manage.py``, celery, a script) that must use this
    run's test database and Redis db; pair it with ``transactional_db`` so it sees the rows."""
    import os
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    env = dict(os.environ)
    database_url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    redis_url = settings.CACHES["memory_l2"]["LOCATION"] if _redis_configured() else ""
    env.update({
        # tests.settings reads only the TEST_ variables; the others serve beecatalog.settings
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": database_url,
        "TEST_REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(settings.BASE_DIR),
        "MEMORY_LOG_LEVEL": "WARNING",
    })
    return env


@pytest.fixture
def empty_database(db):
    """The URL of a new, empty PostgreSQL database (no table, no migration applied) on the test
    server, for child processes; dropped afterwards."""
    params = connection.settings_dict
    name = f"{params['NAME']}_empty"[:63]
    server = {"host": params["HOST"] or "127.0.0.1", "port": params["PORT"] or 5432,
              "user": params["USER"], "password": params["PASSWORD"] or None, "dbname": "postgres"}
    auth = quote(params["USER"] or "", safe="") + (":" + quote(params["PASSWORD"], safe="") if params["PASSWORD"] else "")

    def run(statement):
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(statement)

    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    run(drop)
    run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgres://{auth}@{server['host']}:{server['port']}/{name}"
    finally:
        run(drop)


# --- users, clients and Celery, for every test that goes through a way in ------------------------


@pytest.fixture
def make_user(db):
    """A user with the given memory permissions (codenames), fetched fresh so permissions apply."""

    def make(username="user", *, staff=False, superuser=False, perms=(), active=True):
        user = User.objects.create_user(
            username, password="senha-forte-123", is_staff=staff or superuser, is_superuser=superuser,
            is_active=active,
        )
        for codename in perms:
            user.user_permissions.add(Permission.objects.get(content_type__app_label="memory", codename=codename))
        return User.objects.get(pk=user.pk)

    return make


@pytest.fixture
def api(make_user):
    """A client with the token of a user holding every permission."""
    return token_client(make_user("admin", superuser=True))


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the test's process, as with no broker; their errors reach the test."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved


@pytest.fixture
def published_tasks(monkeypatch):
    """Generation tasks published as to a broker, not run: each ``generate_main_content_task``
    publish is recorded as ``(data, force_regenerate)`` and answered with a queued AsyncResult."""
    calls = []

    def apply_async(args, kwargs, **options):
        (data,) = args
        calls.append((data, kwargs["force_regenerate"]))
        return AsyncResult(f"task-{len(calls)}")

    monkeypatch.setattr(generate_main_content_task, "apply_async", apply_async)
    return calls


@pytest.fixture
def openai_provider(settings, httpserver):
    """``LLM_PROVIDER=openai`` against the test's own HTTP server (pytest-httpserver, the seam
    tests/providers uses), one attempt per generation; yields the server to script its answers."""
    settings.LLM_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = httpserver.url_for("/v1")
    settings.OPENAI_API_KEY = "sk-test"
    settings.LLM_MODEL = "gpt-4o-mini"
    settings.LLM_TIMEOUT = 2.0
    settings.LLM_MAX_ATTEMPTS = 1
    return httpserver


def _drop_celery_connections() -> None:
    """The app builds its broker pool and its result store once, from the configuration of the
    time: after a change they are built again, for the new one."""
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app._backend_cache = None
    if hasattr(celery_app._local, "backend"):
        del celery_app._local.backend


@pytest.fixture
def celery_on_own_redis():
    """Tasks published (not run) to a redis-server of the test's own, broker and result store as
    in production; yields the server, which the test may kill and start again on its port."""
    server = RedisServer().start()
    conf = celery_app.conf
    saved = {key: conf[key] for key in ("broker_url", "result_backend", "task_always_eager")}
    conf.update(broker_url=server.url, result_backend=server.url, task_always_eager=False)
    _drop_celery_connections()
    try:
        yield server
    finally:
        conf.update(saved)
        _drop_celery_connections()
        server.kill()


@pytest.fixture
def l1_trusted(monkeypatch):
    """This process reads its L1 (it would once subscribed to invalidations), so the tier served is certain."""
    monkeypatch.setattr("memory.engine.memory.l1_is_trustworthy", lambda: True)


@pytest.fixture
def fake_openai():
    """A scripted OpenAI-compatible server on loopback; the process's SDK clients are forgotten after."""
    server = FakeOpenAI().start()
    yield server
    reset_clients()
    server.stop()


@pytest.fixture
def openai_on_fake(settings, fake_openai):
    """``LLM_PROVIDER=openai`` against the fake server (chat completions and the Batch API), two
    attempts per call; yields the server."""
    settings.LLM_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = fake_openai.url
    settings.OPENAI_API_KEY = "sk-test"
    settings.LLM_MODEL = "gpt-4o-mini"
    settings.LLM_TIMEOUT = 5.0
    settings.LLM_MAX_ATTEMPTS = 2
    return fake_openai


@pytest.fixture
def full_backlog():
    """A loopback port that never completes a TCP handshake."""
    port = FullBacklog()
    yield port
    reset_clients()
    port.close()


@pytest.fixture
def browser():
    """Headless Chromium through chromedriver, in pt-BR, keeping the console's messages; its
    screenshots go to ``ARTIFACTS``. Modules using it are marked ``NEEDS_BROWSER`` (tests.helpers)."""
    from selenium import webdriver  # only the e2e tests need selenium loaded
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "pt-BR,pt"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
