"""The environment read into settings: each reader returns a usable value or stops the process.

``beecatalog/settings.py`` reads every variable through these functions. A value that cannot be
used (``MEMORY_DEFAULT_TTL=90d``, ``DEBUG=talvez``, ``REDIS_URL=127.0.0.1:6379``) stops the process
with one pt-BR line naming the variable, the value and the form expected (:func:`refuse`), before
Django loads anything: every entry point (manage.py, gunicorn, celery, wsgi/asgi) reads the
settings first, and gunicorn and celery never run system checks. A URL is quoted with its
password masked.
"""
from __future__ import annotations

import json
import math
import sys
import zoneinfo
from collections.abc import Collection, Iterable
from typing import NoReturn
from urllib.parse import SplitResult, urlsplit

import environ

_env = environ.Env()

# gunicorn's "App failed to load": its master stops instead of starting workers forever.
EXIT_CODE = 4


def refuse(message: str) -> NoReturn:
    """Stop the process with ``message`` on one line of stderr and no traceback: a setting to fix."""
    sys.stderr.write(f"{' '.join(message.split())}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CODE)


def is_set(name: str) -> bool:
    """The variable is in the environment (or the ``.env`` file read), even if empty."""
    return name in _env.ENVIRON


def text(name: str, default: str = "") -> str:
    """``name`` as it is set (django-environ's ``$OTHER`` expansion included), else ``default``."""
    return _env.str(name, default=default)


def flag(name: str, default: bool) -> bool:
    """``name`` as true/false (also 1/0, yes/no, on/off, any case); anything else refuses."""
    raw = text(name, str(default)).strip()
    value = _BOOLEANS.get(raw.lower())
    if value is None:
        refuse(f"{name}: use true ou false, não {raw!r}")
    return value


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def number(name: str, default: float, *, minimum: float = 0, integer: bool = False, unit: str = "segundos",
           example: str = "", maximum: float | None = None) -> float:
    """``name`` as a number of ``unit`` (a whole one if ``integer``) not below ``minimum`` (nor above
    ``maximum``, when given).

    A plain number, as Python's ``int``/``float`` read it: a unit (``90d``, ``30s``, ``1 ano``),
    ``nan``, ``inf`` and values below ``minimum`` are refused. ``example`` (``"90 dias = 7776000"``)
    joins the line.
    """
    raw = text(name, str(default)).strip()
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if (value is None or not math.isfinite(value) or value < minimum
            or (maximum is not None and value > maximum)):
        kind = "um número inteiro" if integer else "um número"
        of = f" de {unit}" if unit else ""
        hint = f" ({example})" if example else ""
        bounds = (f"de {minimum:g} a {int(maximum) if float(maximum).is_integer() else maximum}"
                  if maximum is not None
                  else f"maior ou igual a {minimum:g}")
        refuse(f"{name}: use {kind}{of} {bounds}{hint}, não {raw!r}")
    return value


def whole(name: str, default: int, *, minimum: int = 0, unit: str = "segundos", example: str = "",
          maximum: int | None = None) -> int:
    """``name`` as a whole number of ``unit`` not below ``minimum`` (see :func:`number`)."""
    return number(name, default, minimum=minimum, integer=True, unit=unit, example=example, maximum=maximum)


def choice(name: str, choices: Collection[str], default: str) -> str:
    """``name`` as one of ``choices``, spelled exactly."""
    raw = text(name, default).strip()
    if raw not in choices:
        refuse(f"{name}: use {_one_of(choices)}, não {raw!r}")
    return raw


def json_object(name: str, example: str) -> dict:
    """``name`` as a JSON object (``{}`` when unset or empty); ``example`` shows the form expected."""
    raw = text(name).strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        refuse(f"{name}: JSON inválido, use {example}, não {raw!r}")
    if not isinstance(value, dict):
        refuse(f"{name}: use um objeto {example}, não {raw!r}")
    return value


def items(name: str, default: Iterable[str]) -> list[str]:
    """``name`` as a comma-separated list, each item stripped, empty ones dropped."""
    if not is_set(name):
        return list(default)
    return [item.strip() for item in text(name).split(",") if item.strip()]


def origins(name: str) -> list[str]:
    """``name`` as a comma-separated list of origins, each with its scheme (``https://host``)."""
    values = items(name, [])
    for value in values:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            refuse(f"{name}: cada origem tem esquema e host, como https://memoria.example.com, não {value!r}")
    return values


def time_zone(name: str, default: str) -> str:
    """``name`` as a time zone of the IANA database (``America/Sao_Paulo``, ``UTC``)."""
    raw = text(name, default).strip()
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        refuse(f"{name}: use um fuso horário da base IANA, como America/Sao_Paulo ou UTC, não {raw!r}")
    return raw


def hosts(name: str, example: str = "10.0.0.1:26379,10.0.0.2:26379") -> list[tuple[str, int]]:
    """``name`` as a comma-separated list of ``host:port`` (empty: none); each port from 1 to 65535."""
    found = []
    for item in items(name, []):
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            refuse(f"{name}: cada item é host:porta, como {example}, não {item!r}")
        found.append((host, int(port)))
    return found


REDIS_MODES_HINT = ("use um modo só: REDIS_URL (um servidor), REDIS_SENTINELS + REDIS_SENTINEL_MASTER (Sentinel;"
                    " REDIS_URL dá só o banco e a senha) ou REDIS_CLUSTER_NODES (Cluster, sem REDIS_URL)")


def redis_mode_conflict(url: str, sentinels: list, master: str, cluster_nodes: list) -> str:
    """The one pt-BR line that refuses a mix of Redis modes (or an incomplete Sentinel), else ""."""
    if sentinels and cluster_nodes:
        return f"Redis: REDIS_SENTINELS e REDIS_CLUSTER_NODES definidas juntas; {REDIS_MODES_HINT}"
    if cluster_nodes and url:
        return f"Redis: REDIS_CLUSTER_NODES e REDIS_URL definidas juntas; {REDIS_MODES_HINT}"
    if sentinels and not master:
        return "Redis: REDIS_SENTINELS sem REDIS_SENTINEL_MASTER; diga o nome do master que os sentinels vigiam, como mymaster"
    if master and not sentinels:
        return ("Redis: REDIS_SENTINEL_MASTER sem REDIS_SENTINELS; liste os sentinels, como"
                " REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379")
    return ""


# --- URLs -------------------------------------------------------------------------------------------


def masked(url: str) -> str:
    """``url`` with its password, if any, as ``***``: what a refusal may quote."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _one_of(choices: Iterable[str]) -> str:
    choices = list(choices)
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} ou {choices[-1]}"


def _split(name: str, raw: str, example: str) -> SplitResult:
    """``raw`` split, refused without a scheme or with a port that is not a number."""
    if "://" not in raw:
        refuse(f"{name}: falta o esquema da URL; use {example}, não {masked(raw)!r}")
    parts = urlsplit(raw)
    try:
        parts.port
    except ValueError:
        refuse(f"{name}: a porta não é um número de 1 a 65535; use {example}, não {masked(raw)!r}")
    return parts


REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_EXAMPLE = "redis://host:6379/0"


def _check_redis(name: str, raw: str, parts: SplitResult) -> None:
    """A ``redis://``/``rediss://`` URL's database is a number (``/0``): redis-py's ``from_url`` would fail later."""
    if parts.scheme in ("redis", "rediss"):
        db = parts.path.strip("/")
        if db and not db.isdigit():
            refuse(f"{name}: o banco do Redis é um número (/0 a /15), como {REDIS_EXAMPLE}, não {masked(raw)!r}")


def redis_url(name: str, default: str = "") -> str:
    """``name`` as a Redis URL (``redis://``, ``rediss://`` or ``unix://``), or empty: none."""
    raw = text(name, default).strip()
    if not raw:
        return ""
    parts = _split(name, raw, REDIS_EXAMPLE)
    if parts.scheme not in REDIS_SCHEMES:
        refuse(f"{name}: esquema {parts.scheme!r} desconhecido; use {_one_of(s + '://' for s in REDIS_SCHEMES)},"
               f" como {REDIS_EXAMPLE}, não {masked(raw)!r}")
    _check_redis(name, raw, parts)
    return raw


def celery_url(name: str, default: str, schemes: Collection[str]) -> str:
    """``name`` as a Celery broker or result backend URL whose scheme is one of ``schemes``
    (``db+postgresql://`` counts as ``db``), or empty: none."""
    raw = text(name, default).strip()
    if not raw:
        return ""
    parts = _split(name, raw, REDIS_EXAMPLE)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in schemes:
        refuse(f"{name}: esquema {parts.scheme!r} desconhecido; use {REDIS_EXAMPLE} ou outro esquema do Celery"
               f" ({', '.join(sorted({s.lower() for s in schemes}))}), não {masked(raw)!r}")
    _check_redis(name, raw, parts)
    return raw


def http_url(name: str, default: str) -> str:
    """``name`` as an ``http://`` or ``https://`` URL with a host."""
    raw = text(name, default).strip()
    example = "https://api.openai.com/v1"
    parts = _split(name, raw, example)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        refuse(f"{name}: use uma URL http:// ou https:// com host, como {example}, não {masked(raw)!r}")
    return raw


# Schemes whose backend the project runs on: psycopg 3 for PostgreSQL (memory/infra/postgresql), SQLite.
DATABASE_SCHEMES = {"postgres": "PostgreSQL", "postgresql": "PostgreSQL", "pgsql": "PostgreSQL", "sqlite": "SQLite"}
DATABASE_EXAMPLE = "postgres://usuário:senha@host:5432/banco ou sqlite:///caminho/arquivo.sqlite3"


def database(name: str, default: str) -> dict:
    """``name`` as Django's ``DATABASES`` entry (django-environ's parsing) for PostgreSQL or SQLite."""
    return _database_config(name, text(name, default).strip())


def _database_config(name: str, raw: str, schemes: Collection[str] = tuple(DATABASE_SCHEMES)) -> dict:
    parts = _split(name, raw, DATABASE_EXAMPLE)
    if parts.scheme not in DATABASE_SCHEMES:
        refuse(f"{name}: esquema {parts.scheme!r} desconhecido; use postgres:// (PostgreSQL) ou sqlite:// (SQLite),"
               f" como {DATABASE_EXAMPLE}, não {masked(raw)!r}")
    if parts.scheme not in schemes:
        refuse(f"{name}: use postgres:// (PostgreSQL), como {REPLICA_EXAMPLE}, não {masked(raw)!r}")
    try:
        config = _env.db_url_config(raw)
    except Exception as exc:  # django-environ's parsing raises whatever the URL breaks
        refuse(f"{name}: não foi possível ler a URL ({exc}); use {DATABASE_EXAMPLE}, não {masked(raw)!r}")
    if DATABASE_SCHEMES[parts.scheme] == "PostgreSQL" and not config.get("NAME"):
        refuse(f"{name}: falta o nome do banco no fim da URL; use {DATABASE_EXAMPLE}, não {masked(raw)!r}")
    if DATABASE_SCHEMES[parts.scheme] == "SQLite" and not config.get("NAME"):
        refuse(f"{name}: falta o caminho do arquivo; use {DATABASE_EXAMPLE}, não {masked(raw)!r}")
    return config


REPLICA_EXAMPLE = "postgres://usuário:senha@réplica-1:5432/banco,postgres://usuário:senha@réplica-2:5432/banco"


def databases(name: str) -> list[dict]:
    """``name`` as a comma-separated list of PostgreSQL URLs (read replicas), each a ``DATABASES``
    entry; empty or unset: none. The same URL twice is refused."""
    urls = items(name, [])
    seen: set[str] = set()
    configs = []
    for url in urls:
        if url in seen:
            refuse(f"{name}: a mesma réplica aparece duas vezes ({masked(url)!r}); use {REPLICA_EXAMPLE}")
        seen.add(url)
        configs.append(_database_config(name, url, schemes=("postgres", "postgresql", "pgsql")))
    return configs
