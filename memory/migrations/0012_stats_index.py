"""The stats' counts read one index instead of the whole table (issue 19: at 10M rows the table's
scan outlasted DB_STATEMENT_TIMEOUT). A plain CREATE INDEX: on a table of 10M entries it takes
one to two minutes, writes to the entries waiting meanwhile (docs/benchmarks.md); the statement
may run past DB_STATEMENT_TIMEOUT, as an operator's ``migrate`` knowingly does."""
from django.db import migrations, models

from memory.infra.postgresql.base import unbounded


class AddIndexUnbounded(migrations.AddIndex):
    """``AddIndex`` whose statement is not cut by the bounded backend's timeouts (PostgreSQL runs a
    migration in one transaction, which ``unbounded`` lifts them for)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        connection = schema_editor.connection
        if connection.vendor != "postgresql" or not connection.in_atomic_block:
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        with unbounded(connection):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):

    dependencies = [
        ('memory', '0011_refresh_ahead'),
    ]

    operations = [
        AddIndexUnbounded(
            model_name='productmemoryentry',
            index=models.Index(fields=['kind', 'generator_version', 'expires_at', 'approved', 'origin'],
                               name='memory_entry_stats_idx'),
        ),
    ]
