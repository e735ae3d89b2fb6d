"""Is the database migrated: has every migration of the code's apps been applied?

Health, every request (``memory.middleware``) and the commands ask, so the answer is cheap: once
a database has every migration applied, this process never asks it again (the migrations on
disk are the process's own code; new ones come with a new process). While some are pending,
each ask reads ``django_migrations`` again (a few ms), so running ``migrate`` counts at once.
"""
from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections
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


def pending_migrations(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The ``app.migration`` names not applied to database ``using``, in the order ``migrate`` applies them.

    Database errors (unreachable, wrong credentials) propagate: the caller reports those itself.
    """
    if using in _migrated:
        return []
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    if not names:
        _migrated.add(using)
    return names


def require_migrated(using: str = DEFAULT_DB_ALIAS) -> None:
    """Return if database ``using`` has every migration applied, else raise :class:`PendingMigrations`."""
    names = pending_migrations(using)
    if names:
        raise PendingMigrations(names)
