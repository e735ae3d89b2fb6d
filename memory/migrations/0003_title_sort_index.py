"""A btree index for sorting by title, on its first 100 characters (see ``TITLE_SORT_CHARS``).

On PostgreSQL it is built ``CONCURRENTLY``, so that a table of millions of rows
keeps taking writes while the index is built (hence ``atomic = False``).
"""
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, a plain ``AddIndex`` elsewhere (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("memory", "0002_trigram_search_indexes"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="productmemoryentry",
            index=models.Index(django.db.models.functions.text.Left("title", 100), name="memory_entry_title_sort_idx"),
        ),
    ]
