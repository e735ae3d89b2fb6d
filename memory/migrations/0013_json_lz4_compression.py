"""The JSON columns (an entry's payload and source data, a version's payload) compressed by lz4
instead of pglz, PostgreSQL's default (issue 19: a 3 KB payload is compressed on every write,
twice for a new entry with its first version; lz4 took the backend's CPU for a 50k-row import
from 7.0 to 6.0 s, docs/benchmarks.md).

Only the catalog changes (no rewrite, a moment's lock): values written before keep pglz, and
PostgreSQL reads both. A server built without lz4 (``default_toast_compression`` does not offer
it) keeps pglz; SQLite has no such setting. A table partitioned by expiry passes the setting on
to its partitions."""
from django.db import migrations

JSON_COLUMNS = (
    ("memory_productmemoryentry", "payload"),
    ("memory_productmemoryentry", "source_data"),
    ("memory_contentversion", "payload"),
)


def lz4_available(cursor) -> bool:
    cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    found = cursor.fetchone()
    return bool(found and found[0])


def set_compression(method: str):
    def apply(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            if method == "lz4" and not lz4_available(cursor):
                return
            for table, column in JSON_COLUMNS:
                cursor.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} SET COMPRESSION {method}")

    return apply


class Migration(migrations.Migration):

    dependencies = [
        ('memory', '0012_stats_index'),
    ]

    operations = [
        migrations.RunPython(set_compression("lz4"), set_compression("pglz")),
    ]
