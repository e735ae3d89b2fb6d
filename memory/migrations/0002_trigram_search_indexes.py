"""Trigram indexes for ``icontains`` search on title and product_id (PostgreSQL only).

Django's ``icontains`` on PostgreSQL compiles to ``UPPER(col::text) LIKE UPPER(%s)``,
so the indexes are built on exactly that expression. SQLite (the demo) skips them.
"""
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = {
    "memory_entry_title_trgm": "title",
    "memory_entry_product_trgm": "product_id",
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS {name} ON memory_productmemoryentry '
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("memory", "0001_initial")]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
