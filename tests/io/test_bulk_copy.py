"""The PostgreSQL bulk path of import and restore (``COPY`` into a temporary table, one ``INSERT …
ON CONFLICT``, the versions by ``COPY``) leaves exactly what the ORM's ``bulk_create`` path
leaves: rows, histories (carried, kept, imported, trimmed), approvals, counts."""
import io
import json

import pytest
from django.db import connection, transaction
from django.test import override_settings

from memory.engine.memory import ProductMemory
from memory.engine.tiers import DatabaseTier, json_array, keys_of_kind_sql
from memory.io.export import iter_export
from memory.io.importer import import_entries
from memory.models import ContentVersion, ProductMemoryEntry
from tests.helpers import CONTENT, make_entries, snapshot_table

pytestmark = pytest.mark.django_db


class _Undo(Exception):
    pass


def _state_after(text: str, copy: bool, monkeypatch) -> tuple:
    """The table and the report after importing ``text``, every change then rolled back."""
    monkeypatch.setattr(DatabaseTier, "BULK_COPY", copy)
    try:
        with transaction.atomic():
            report = import_entries(io.StringIO(text), "jsonl")
            state = (snapshot_table(), report.as_dict(), ProductMemoryEntry.objects.count(),
                     ContentVersion.objects.count())
            raise _Undo
    except _Undo:
        pass
    return state


@override_settings(MEMORY_MAX_VERSIONS=3)
def test_copy_and_bulk_create_leave_the_same_tables(monkeypatch):
    make_entries(4)
    memory = ProductMemory()
    # SKU00001: an edit history of its own, beyond the retention once imported over
    for n in range(3):
        memory.save_product_data("SKU00001", {**CONTENT, "title": f"Edição {n}"}, count_generation=False)
    exported = [json.loads(line) for line in "".join(iter_export("jsonl")).splitlines()]
    lines = []
    for row in exported:
        if row["product_id"] == "SKU00000":
            pass  # same content as held: kept, no new version
        elif row["product_id"] == "SKU00001":
            row["payload"] = {**CONTENT, "title": "Do arquivo"}  # a content it did not hold: imported
        elif row["product_id"] == "SKU00002":
            row.update(approved=True, approved_by="revisora", approved_at="2026-11-21T10:00:00+00:00")
        lines.append(row)
        new = dict(row, product_id="NOVO-" + row["product_id"])  # new here: takes the file's history
        new["versions"] = [dict(v, number=v["number"] + k) for k, v in
                           enumerate([row["versions"][-1]] * 5)]
        lines.append(new)
    lines.append(dict(lines[0], payload={**CONTENT, "title": "Repetida, a última vence"}))
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)

    before = snapshot_table()
    orm = _state_after(text, copy=False, monkeypatch=monkeypatch)
    assert snapshot_table() == before  # rolled back
    copied = _state_after(text, copy=True, monkeypatch=monkeypatch)
    assert copied == orm
    table, report, entries, _ = copied
    assert (report["created"], report["updated"], entries) == (4, 4, 8)
    assert [v["origin"] for v in table[("SKU00001", "main_content")]["versions"]][-1] == "imported"
    assert len(table[("SKU00001", "main_content")]["versions"]) == 3  # trimmed to MEMORY_MAX_VERSIONS
    assert len(table[("NOVO-SKU00000", "main_content")]["versions"]) == 3
    assert table[("SKU00002", "main_content")]["approved"] is True
    assert table[("SKU00000", "main_content")]["payload"]["title"] == "Repetida, a última vence"


def test_the_copy_path_is_the_one_postgresql_takes(monkeypatch):
    """The import's statements on PostgreSQL: a COPY into the temporary table, no bulk_create."""
    assert connection.vendor == "postgresql"
    make_entries(2)
    text = "".join(iter_export("jsonl"))
    ProductMemory().clear()
    monkeypatch.setattr(ProductMemoryEntry.objects, "bulk_create",
                        lambda *a, **k: pytest.fail("the ORM's bulk_create ran on PostgreSQL"))
    report = import_entries(io.StringIO(text), "jsonl")
    assert report.ok and report.created == 2
    assert ProductMemoryEntry.objects.count() == 2 and ContentVersion.objects.count() == 2
    with connection.cursor() as cursor:  # ON COMMIT DROP, and dropped at once anyway
        cursor.execute("SELECT to_regclass('pg_temp.memory_import_rows')")
        assert cursor.fetchone()[0] is None



def test_a_key_another_writer_inserted_after_the_lookup_is_updated_not_duplicated(monkeypatch):
    """New keys go straight into the table by COPY; one a concurrent save inserted after the
    batch looked (here: the lookup is made to miss it once) fails that COPY, and the batch,
    rolled back to its savepoint, looks again and updates the row."""
    make_entries(1)
    key = ("SKU00000", "main_content")
    text = "".join(iter_export("jsonl")).replace('"title": ', '"title": "Do arquivo", "old_title": ', 1)
    text += json.dumps({"product_id": "NOVO-1", "payload": CONTENT}) + "\n"
    looked = []
    real = DatabaseTier._current_versions

    def missing_once(self, keys):
        found = real(self, keys)
        if not looked:
            found.pop(key)  # as if the row was committed by another writer after this lookup
        looked.append(1)
        return found

    monkeypatch.setattr(DatabaseTier, "_current_versions", missing_once)
    report = import_entries(io.StringIO(text), "jsonl")
    assert (report.ok, report.created, report.updated, len(looked)) == (True, 1, 1, 2)
    entry = ProductMemoryEntry.objects.get(product_id="SKU00000")
    assert entry.payload["title"] == "Do arquivo"
    assert ProductMemoryEntry.objects.count() == 2
    assert list(ContentVersion.objects.filter(entry_id=entry.pk).order_by("number").values_list("number", "origin")) == [
        (1, "generated"), (2, "imported")]


def test_a_bad_row_after_batches_were_copied_rolls_every_batch_back(monkeypatch, redis_client):
    """One pass: batches are written as rows are read; a bad row in the third batch leaves the
    table, the versions and the cached copies as they were, and every bad row is reported."""
    from memory.io import importer

    monkeypatch.setattr(importer, "COPY_BATCH_ROWS", 10)
    make_entries(5)
    memory = ProductMemory()
    assert memory.get_product_data("SKU00003", count_hit=False) is not None  # cached in L1 and Redis
    cached = redis_client.keys("*SKU00003*")
    assert cached
    before = snapshot_table()
    rows = [json.dumps({"product_id": f"SKU{n:05d}", "payload": {**CONTENT, "title": f"Novo {n}"}})
            for n in range(30)]
    rows[24] = json.dumps({"product_id": "RUIM", "payload": "não é um objeto"})
    rows.append("{quebrado")
    report = import_entries(io.StringIO("\n".join(rows) + "\n"), "jsonl")
    assert (report.ok, report.created, report.updated) == (False, 0, 0)
    assert [n for n, _ in report.errors] == [25, 31]
    assert snapshot_table() == before
    assert redis_client.keys("*SKU00003*") == cached
    assert memory.get_product_data("SKU00003", count_hit=False).content == before[("SKU00003", "main_content")]["payload"]


def test_the_lookup_of_a_batchs_keys_goes_by_the_unique_index_on_a_table_without_statistics():
    """An import of 1M rows into a new database (no statistics until its one transaction commits)
    read, for each batch, every row of the kind through the stats index: the import slowed as the
    table grew (355 s, docs/benchmarks.md). Its lookups, and a batch check's, go one id at a time by
    the unique index whatever the planner knows of the table."""
    make_entries(3000, prefix="P")  # in the test's transaction: never analyzed
    with connection.cursor() as cursor:
        for lock in ("", " FOR UPDATE"):
            cursor.execute("EXPLAIN " + keys_of_kind_sql("id, payload::text", "memory_productmemoryentry", lock=lock),
                           [json_array([f"P{i:05d}" for i in range(0, 3000, 3)]), "main_content"])
            plan = "\n".join(line for (line,) in cursor.fetchall())
            assert "Index Scan using memory_entry_product_kind_uniq" in plan, plan
            assert "memory_entry_stats_idx" not in plan, plan
        cursor.execute(keys_of_kind_sql("product_id", "memory_productmemoryentry"),
                       [json_array(["P00001", "P00002", "NONE"]), "main_content"])
        assert sorted(cursor.fetchall()) == [("P00001",), ("P00002",)]
