"""On PostgreSQL the JSON columns are compressed by lz4 (migration 0013): what a save, an import
or a version writes is compressed by it, on the plain table and on one partitioned by expiry."""
import json

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from memory.engine import partitions
from memory.engine.memory import ProductMemory
from memory.io.importer import import_entries

COLUMNS = {("memory_productmemoryentry", "payload"), ("memory_productmemoryentry", "source_data"),
           ("memory_contentversion", "payload")}
# Big enough to be compressed (past PostgreSQL's ~2 KB TOAST threshold), and compressible.
LONG_CONTENT = {"title": "Caneca Térmica", "description": "Caneca de aço inox, parede dupla. " * 150,
                "bullet_points": [], "seo_keywords": []}


def column_methods(tables: set[str]) -> dict[tuple[str, str], str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relname = ANY(%s) AND a.attname IN ('payload', 'source_data') AND NOT a.attisdropped",
            [sorted(tables)])
        return {(table, column): method for table, column, method in cursor.fetchall()}


def stored_methods() -> set[tuple[str | None, str | None]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_column_compression(e.payload), pg_column_compression(v.payload)"
                       " FROM memory_productmemoryentry e JOIN memory_contentversion v ON v.entry_id = e.id")
        return set(cursor.fetchall())


@pytest.mark.django_db
def test_the_json_columns_are_lz4_and_a_saved_content_is_stored_so():
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting")
    assert column_methods({"memory_productmemoryentry", "memory_contentversion"}) == {c: "l" for c in COLUMNS}
    ProductMemory().save_product_data({"sku": "LZ4-1"}, LONG_CONTENT)
    assert stored_methods() == {("lz4", "lz4")}


@pytest.mark.django_db
def test_an_import_into_the_partitioned_table_is_stored_lz4_in_every_partition(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting")
    with override_settings(MEMORY_PARTITION_BY_EXPIRY="monthly", MEMORY_PARTITIONS_AHEAD=3):
        partitions.convert(now=timezone.now())
        with connection.cursor() as cursor:
            names = {p.name for p in partitions.partitions(cursor)}
        methods = column_methods(names)
        assert {method for (_, column), method in methods.items()} == {"l"}
        assert {table for table, _ in methods} == names
        path = tmp_path / "entries.jsonl"
        path.write_text("".join(json.dumps({"product_id": f"LZ4-{n}", "payload": LONG_CONTENT}) + "\n"
                                for n in range(3)))
        assert import_entries(path).created == 3
        assert stored_methods() == {("lz4", "lz4")}
