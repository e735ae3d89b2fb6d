"""docker-compose.yml, read as Docker Compose reads it (no Docker engine needed): after the README's
``cp .env.example .env``, every container reaches PostgreSQL, Redis and the broker by their
service names, whatever the mounted .env (written for the host) says, and web's gunicorn
workers share their metrics."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MOUNTED = "/app"  # where every app service mounts the repository, .env included
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def dotenv(path: Path) -> dict:
    """KEY=value lines, as both Compose and django-environ read .env.example."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


# What `cp .env.example .env` gives Compose and the settings, with the SECRET_KEY the README
# says to set (`SECRET_KEY=... docker compose up`, or in .env).
SECRET_KEY = "a-key-of-the-users-own-0123456789abcdefghijklmnopqrstuvwxyz"
HOST_ENV = {**dotenv(ROOT / ".env.example"), "SECRET_KEY": SECRET_KEY}


def interpolate(value: str, variables: dict) -> str:
    """Compose's interpolation: ``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset
    only), ``${VAR:?error}``, ``${VAR}``, ``$VAR``; ``$$`` is a ``$``."""

    def one(match):
        if match.group(0) == "$$":
            return "$"
        name, kind, word = match.group(1) or match.group(4), match.group(2), match.group(3)
        found = variables.get(name, "")
        if kind == "-":
            return variables[name] if name in variables else word
        if found or kind is None:
            return found
        if kind == ":?":
            raise AssertionError(f"docker compose refuses to start: {name}: {word}")
        return word

    return re.sub(r"\$\$|\$\{(\w+)(?:(:-|:\?|-)([^}]*))?\}|\$(\w+)", one, str(value))


def environment(service: str, variables: dict = HOST_ENV) -> dict:
    """The container's environment as Compose builds it from the file (anchors merged)."""
    return {k: interpolate(v, variables) for k, v in (SERVICES[service].get("environment") or {}).items()}


def command(service: str) -> str:
    """The container's command, with Compose's ``$$`` passed to the shell as ``$``."""
    return interpolate(SERVICES[service]["command"], {})


APP_SERVICES = [name for name, s in SERVICES.items()
                if re.search(r"\b(manage\.py|gunicorn|celery)\b", str(s.get("command", "")))]


def test_the_app_runs_in_web_the_worker_and_beat():
    assert APP_SERVICES == ["web", "worker", "beat"]
    for name in APP_SERVICES:
        assert f".:{MOUNTED}" in SERVICES[name]["volumes"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_app_service_reaches_the_servers_by_their_service_names(service):
    env = environment(service)
    wanted = {"DATABASE_URL": "postgres", "REDIS_URL": "redis", "CELERY_BROKER_URL": "redis",
              "CELERY_RESULT_BACKEND": "redis"}
    for variable, host in wanted.items():
        assert urlsplit(env.get(variable, "")).hostname == host, (variable, env.get(variable))
        assert host in SERVICES
    assert urlsplit(env["DATABASE_URL"]).path == "/" + SERVICES["postgres"]["environment"]["POSTGRES_DB"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_host_specific_value_of_the_env_example_is_set_by_compose(service):
    """The settings read the mounted .env for what the environment leaves unset: each value of
    .env.example that names this machine must be replaced inside the container."""
    env = environment(service)
    local = {k for k, v in HOST_ENV.items() if any(h in v for h in LOCAL_HOSTS)}
    assert {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ALLOWED_HOSTS"} <= local
    for variable in local:
        assert variable in env, f"{service} leaves {variable} to .env: {HOST_ENV[variable]}"
        assert not any(h in env[variable] for h in LOCAL_HOSTS), (variable, env[variable])


def test_web_runs_several_gunicorn_workers_sharing_a_tmpfs_metrics_folder_their_master_empties():
    """A tmpfs mounted at PROMETHEUS_MULTIPROC_DIR: it exists before `migrate` (the settings refuse
    a missing folder), outside the mounted repository, empty at each start of the container; and
    gunicorn reads gunicorn.conf.py, whose master empties it again before starting its workers."""
    env, line = environment("web"), command("web")
    workers = int(re.search(r"gunicorn .*--workers (\d+)", line).group(1))
    assert workers > 1
    folder = env["PROMETHEUS_MULTIPROC_DIR"]
    assert folder.startswith("/") and not folder.startswith(MOUNTED + "/"), folder  # not the host's var/
    assert folder in SERVICES["web"]["tmpfs"]
    shell = shlex.split(line)[2]  # sh -c "<this>"
    steps = [s.strip() for s in re.split(r"&&", shell)]
    start = next(s for s in steps if s.startswith("gunicorn "))
    assert "--config gunicorn.conf.py" in start
    gunicorn_conf = (ROOT / "gunicorn.conf.py").read_text()
    assert "multiprocess.empty_folder(settings.PROMETHEUS_MULTIPROC_DIR)" in gunicorn_conf


def test_beat_shares_no_metrics_folder():
    """Set (empty) rather than left to .env, where a host path would not exist in the container."""
    assert environment("beat")["PROMETHEUS_MULTIPROC_DIR"] == ""


def test_the_worker_serves_its_metrics_on_the_network_from_a_tmpfs_folder_of_its_own():
    """Its prefork pool's processes add up in a tmpfs of the worker's container; the endpoint
    listens on compose's network, and no port is published on the host (it asks for no token)."""
    env = environment("worker")
    assert int(env["METRICS_WORKER_PORT"]) > 0 and env["METRICS_WORKER_ADDR"] == "0.0.0.0"
    folder = env["PROMETHEUS_MULTIPROC_DIR"]
    assert folder.startswith("/") and not folder.startswith(MOUNTED + "/") and folder in SERVICES["worker"]["tmpfs"]
    assert "ports" not in SERVICES["worker"]
    assert "--pool" not in command("worker")  # prefork: hence the folder
    # the healthcheck's own process writes no files into the worker's folder
    assert SERVICES["worker"]["healthcheck"]["test"][1].startswith("PROMETHEUS_MULTIPROC_DIR= celery ")


SHOW = (
    "import json, os, beecatalog.settings as s; db = s.DATABASES['default'];"
    "print(json.dumps({'db': [db['HOST'], db['NAME']], 'redis': s.REDIS_URL,"
    " 'l2': s.CACHES['memory_l2']['LOCATION'], 'broker': s.CELERY_BROKER_URL,"
    " 'backend': s.CELERY_RESULT_BACKEND, 'eager': s.CELERY_TASK_ALWAYS_EAGER,"
    " 'allowed_hosts': s.ALLOWED_HOSTS, 'backups': str(s.MEMORY_BACKUP_DIR),"
    " 'multiproc': [s.PROMETHEUS_MULTIPROC_DIR, os.environ.get('PROMETHEUS_MULTIPROC_DIR')]}))"
)


def settings_with(env: dict, dotenv_file: Path) -> dict:
    """beecatalog.settings loaded in a child whose environment is only ``env``, reading ``dotenv_file``."""
    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        # What the container's tmpfs mount gives it: the settings refuse a folder that does not exist.
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    child = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DOTENV_PATH": str(dotenv_file), **env}
    out = subprocess.run([sys.executable, "-c", SHOW], env=child, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def host_dotenv(tmp_path) -> Path:
    path = tmp_path / ".env"
    path.write_text((ROOT / ".env.example").read_text())
    return path


def test_without_compose_the_copied_env_example_is_what_the_settings_read(host_dotenv):
    seen = settings_with({"SECRET_KEY": SECRET_KEY}, host_dotenv)
    assert seen["db"] == ["127.0.0.1", "beecatalog"]
    assert seen["broker"] == seen["backend"] == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_inside_the_containers_compose_wins_over_the_mounted_env(service, host_dotenv):
    env = environment(service)
    seen = settings_with(env, host_dotenv)
    assert seen["db"] == ["postgres", "beecatalog"]
    assert seen["redis"] == seen["l2"] == env["REDIS_URL"]
    assert urlsplit(seen["broker"]).hostname == urlsplit(seen["backend"]).hostname == "redis", seen
    assert seen["eager"] is False
    assert seen["allowed_hosts"] == ["*"] and seen["backups"] == "/app/var/backups"
    folder = env.get("PROMETHEUS_MULTIPROC_DIR")
    # An empty folder (beat) is one process: the settings drop the variable, which prometheus_client
    # would take for the current folder.
    assert seen["multiproc"] == ([folder, folder] if folder else ["", None])


# --- the Redis modes: a profile of servers each, and an env file of compose/ -------------------

MODES = ("sentinel", "cluster")


def mode_variables(mode: str) -> dict:
    """What ``--env-file .env --env-file compose/<mode>.env`` gives Compose (the later file wins)."""
    return {**HOST_ENV, **dotenv(ROOT / "compose" / f"{mode}.env")}


SHOW_MODE = (
    "import json, beecatalog.settings as s;"
    "print(json.dumps({'mode': s.REDIS_MODE, 'sentinels': s.REDIS_SENTINELS, 'nodes': s.REDIS_CLUSTER_NODES,"
    " 'broker': s.CELERY_BROKER_URL, 'backend': s.CELERY_RESULT_BACKEND,"
    " 'options': s.CELERY_BROKER_TRANSPORT_OPTIONS, 'eager': s.CELERY_TASK_ALWAYS_EAGER}))"
)


def test_without_a_mode_file_compose_starts_one_redis_and_no_mode_server():
    assert "COMPOSE_PROFILES" not in HOST_ENV
    assert "profiles" not in SERVICES["redis"]
    for name, service in SERVICES.items():
        assert name in ("postgres", "redis", *APP_SERVICES) or set(service["profiles"]) & set(MODES), name
    for service in APP_SERVICES:
        assert environment(service)["REDIS_URL"] == "redis://redis:6379/0"
        assert not environment(service)["REDIS_SENTINELS"] and not environment(service)["REDIS_CLUSTER_NODES"]


@pytest.mark.parametrize("mode", MODES)
def test_what_the_app_waits_for_of_a_mode_is_not_required_without_its_profile(mode):
    waits = SERVICES["web"]["depends_on"]
    mode_servers = [name for name in waits if mode in SERVICES[name].get("profiles", [])]
    assert mode_servers
    assert all(waits[name].get("required") is False for name in mode_servers)


@pytest.mark.parametrize("service", APP_SERVICES)
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_file_runs_the_app_on_its_profiles_servers_by_their_service_names(mode, service, host_dotenv):
    variables = mode_variables(mode)
    assert variables["COMPOSE_PROFILES"] == mode
    env = environment(service, variables)
    child = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DOTENV_PATH": str(host_dotenv), **env}
    out = subprocess.run([sys.executable, "-c", SHOW_MODE], env=child, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["mode"] == mode and seen["eager"] is False
    hosts = [host for host, _ in seen["sentinels"] or seen["nodes"]]
    assert len(hosts) == 3 and all(mode in SERVICES[host]["profiles"] for host in hosts)
    if mode == "sentinel":
        assert seen["broker"].startswith("sentinel://") and seen["options"] == {"master_name": "bcmaster"}
        assert "sentinel monitor bcmaster redis-master 6379" in " ".join(SERVICES["sentinel-1"]["command"].split())
    else:
        broker = urlsplit(seen["broker"])
        assert broker.scheme == "amqp" and mode in SERVICES[broker.hostname]["profiles"]
        assert seen["backend"] == "rpc://"
        assert all(f"{host}:6379" in SERVICES["redis-cluster-init"]["command"] for host in hosts)
