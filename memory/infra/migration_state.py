"""Is the database there and migrated: does it exist, has every migration of the code's apps been applied?

Health, every request (``memory.middleware``) and the commands ask, so the answer is cheap: once
a database has every migration applied, this process never asks it again (the migrations on
disk are the process's own code; new ones come with a new process). While some are pending,
each ask reads ``django_migrations`` again (a few ms), so running ``migrate`` counts at once.
"""
from __future__ import annotations

import re
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.migrations.executor import MigrationExecutor

MIGRATE_HINT = "Rode: python manage.py migrate"
# The line for anyone (health without credentials): it names no migration.
NOT_MIGRATED = f"O banco de dados não está migrado. {MIGRATE_HINT}"
_NAMES_SHOWN = 3

# Aliases of the databases found with every migration applied: true for this process's life.
_migrated: set[str] = set()


class PendingMigrations(Exception):
    """The database lacks migrations the code needs; ``str()`` is one pt-BR line ending in the hint."""

    def __init__(self, names: list[str]):
        self.names = names
        shown = ", ".join(names[:_NAMES_SHOWN])
        if len(names) > _NAMES_SHOWN:
            shown += f" e mais {len(names) - _NAMES_SHOWN}"
        count = "1 migração pendente" if len(names) == 1 else f"{len(names)} migrações pendentes"
        super().__init__(f"O banco de dados não está migrado ({count}: {shown}). {MIGRATE_HINT}")


# The line for anyone (health without credentials, the pages): it names no server nor database.
NO_DATABASE = "O banco de dados configurado em DATABASE_URL não existe. Crie-o (createdb) e rode: python manage.py migrate"

# PostgreSQL's FATAL at connect, in English or in the server's pt_BR messages. It comes without a
# SQLSTATE (the connection never opened), so its text is all there is.
_NO_SUCH_DATABASE = re.compile(r'database "(?P<name>[^"]*)" does not exist|banco de dados "(?P<nome>[^"]*)" não existe')


class MissingDatabase(Exception):
    """The server answers but has no database of DATABASE_URL's name; ``str()`` is one pt-BR line
    naming it, with the ``createdb`` command that makes it."""

    def __init__(self, name: str, settings_dict: dict):
        self.name = name
        where = [f"-{flag} {settings_dict[key]}" for flag, key in (("h", "HOST"), ("p", "PORT"), ("U", "USER"))
                 if settings_dict.get(key)]
        server = f" no servidor {settings_dict['HOST']}" if settings_dict.get("HOST") else ""
        super().__init__(f"DATABASE_URL: o banco de dados {name!r} não existe{server}; crie-o com:"
                         f" createdb {' '.join([*where, name])} e rode: python manage.py migrate")


def missing_database(exc: BaseException, using: str = DEFAULT_DB_ALIAS) -> MissingDatabase | None:
    """``exc`` as :class:`MissingDatabase` when it says database ``using`` does not exist, else None."""
    match = _NO_SUCH_DATABASE.search(str(exc)) if isinstance(exc, OperationalError) else None
    if match is None:
        return None
    settings_dict = connections[using].settings_dict
    return MissingDatabase(settings_dict.get("NAME") or match["name"] or match["nome"], settings_dict)


@contextmanager
def existing_database(using: str = DEFAULT_DB_ALIAS):
    """Raise :class:`MissingDatabase` instead of the ``OperationalError`` of a database that does not exist."""
    try:
        yield
    except OperationalError as exc:
        missing = missing_database(exc, using)
        if missing is None:
            raise
        raise missing from None


def pending_migrations(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The ``app.migration`` names not applied to database ``using``, in the order ``migrate`` applies them.

    A database that does not exist raises :class:`MissingDatabase`; other database errors
    (unreachable, wrong credentials) propagate: the caller reports those itself.
    """
    if using in _migrated:
        return []
    with existing_database(using):
        executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    if not names:
        _migrated.add(using)
    return names


def require_migrated(using: str = DEFAULT_DB_ALIAS) -> None:
    """Return if database ``using`` has every migration applied, else raise :class:`PendingMigrations`
    (:class:`MissingDatabase` if it does not exist)."""
    names = pending_migrations(using)
    if names:
        raise PendingMigrations(names)
