"""GET /api/memory/export/: a streamed download, bounded in memory, that the import reads back."""
import csv
import io
import json
import tracemalloc

import pytest
from django.db import connection

from memory.models import ProductMemoryEntry
from memory.io.importer import import_entries

from tests.helpers import (
    CONTENT, FORMULA_TEXTS, ROUND_TRIP_TEXTS, SPREADSHEET_TRIGGERS, make_formula_entries, seed, snapshot_table,
)


def download(response) -> bytes:
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content)


@pytest.fixture
def three_entries(db):
    seed({"sku": "A1", "title": "Caneca"}, {**CONTENT, "title": "Caneca azul"})
    seed({"sku": "B2", "title": "Fone"}, {**CONTENT, "title": "Fone, \"sem fio\"\nJBL"})
    seed({"sku": "C3", "title": "Mochila"}, {**CONTENT, "title": "Mochila ção"})


@pytest.mark.django_db
@pytest.mark.parametrize("fmt, content_type, extension", [
    ("json", "application/json", "json"),
    ("jsonl", "application/x-ndjson", "jsonl"),
    ("csv", "text/csv", "csv"),
])
def test_export_is_an_attachment_the_import_reads_back(api, three_entries, fmt, content_type, extension):
    response = api.get("/api/memory/export/", {"format": fmt})
    body = download(response)
    assert response["Content-Type"].startswith(content_type)
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response["Content-Disposition"].endswith(f'.{extension}"')
    before = {e.product_id: e.payload for e in ProductMemoryEntry.objects.all()}

    ProductMemoryEntry.objects.all().delete()
    report = import_entries(io.BytesIO(body), fmt)

    assert report.ok, report.as_dict()
    assert {e.product_id: e.payload for e in ProductMemoryEntry.objects.all()} == before


@pytest.mark.django_db
def test_export_defaults_to_json_and_honours_limit(api, three_entries):
    rows = json.loads(download(api.get("/api/memory/export/")))
    assert [r["product_id"] for r in rows] == ["A1", "B2", "C3"]
    limited = download(api.get("/api/memory/export/?format=jsonl&limit=2")).decode().splitlines()
    assert [json.loads(line)["product_id"] for line in limited] == ["A1", "B2"]
    table = list(csv.DictReader(io.StringIO(download(api.get("/api/memory/export/?format=csv&limit=1")).decode())))
    assert [r["product_id"] for r in table] == ["A1"]


@pytest.mark.django_db
def test_csv_export_quotes_every_cell_a_spreadsheet_would_run_as_a_formula(api):
    make_formula_entries()
    body = download(api.get("/api/memory/export/?format=csv")).decode()
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert sorted(row["product_id"] for row in rows) == sorted("'" + text for text in FORMULA_TEXTS)
    assert [cell for row in rows for cell in row.values() if cell.startswith(SPREADSHEET_TRIGGERS)] == []


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_exports_hold_formula_texts_as_they_are(api, fmt):
    make_formula_entries()
    body = download(api.get(f"/api/memory/export/?format={fmt}")).decode()
    rows = json.loads(body) if fmt == "json" else [json.loads(line) for line in body.splitlines()]
    assert sorted(row["product_id"] for row in rows) == sorted(FORMULA_TEXTS)


@pytest.mark.django_db
def test_csv_export_of_formula_and_quoted_texts_imports_back_exactly(api):
    make_formula_entries(ROUND_TRIP_TEXTS)
    before = snapshot_table()
    body = download(api.get("/api/memory/export/?format=csv"))
    ProductMemoryEntry.objects.all().delete()
    assert import_entries(io.BytesIO(body), "csv").ok
    assert snapshot_table() == before


@pytest.mark.django_db
def test_export_of_an_empty_memory_is_valid(api):
    assert json.loads(download(api.get("/api/memory/export/?format=json"))) == []
    assert download(api.get("/api/memory/export/?format=jsonl")) == b""


@pytest.mark.django_db
@pytest.mark.parametrize("query, field", [
    ("format=xml", "format"),
    ("format=xlsx", "format"),
    ("limit=0", "limit"),
    ("limit=-3", "limit"),
    ("limit=muitos", "limit"),
    ("limit=99999999999999999999", "limit"),
])
def test_export_refuses_bad_parameters(api, query, field):
    response = api.get(f"/api/memory/export/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def insert_rows(count: int, payload_bytes: int) -> None:
    """``count`` entries written by PostgreSQL itself, so that the test spends its time on the export."""
    filler = "x" * payload_bytes
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO memory_productmemoryentry
                (product_id, kind, payload, source_data, input_fingerprint, generator_version,
                 tokens_prompt, tokens_completion, hit_count, tokens_saved, created_at, updated_at, expires_at)
            SELECT 'SKU-' || n, 'main_content',
                   jsonb_build_object('title', 'Produto ' || n, 'description', %s::text),
                   jsonb_build_object('sku', 'SKU-' || n), md5(n::text), 'template:template:p1',
                   100, 50, 0, 0, now(), now(), now() + interval '90 days'
            FROM generate_series(1, %s) AS n
            """,
            [filler, count],
        )


@pytest.mark.slow
@pytest.mark.django_db
def test_export_streams_in_bounded_memory(api):
    """30,000 rows, about 90 MB of JSON Lines: the view's peak memory stays a small fraction of that."""
    insert_rows(30_000, 2900)
    response = api.get("/api/memory/export/?format=jsonl")
    assert response.status_code == 200 and response.streaming

    tracemalloc.start()
    try:
        total = lines = 0
        for chunk in response.streaming_content:
            total += len(chunk)
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert lines == 30_000
    assert total > 80_000_000
    print(f"export: {lines} rows, {total} bytes, peak traced memory {peak} bytes")
    assert peak < total / 10, f"peak {peak} bytes for {total} bytes exported"
