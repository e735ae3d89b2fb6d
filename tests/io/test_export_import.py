"""Export and import formats: what one writes, the other reads back equal."""
import csv
import gzip
import io
import json
import tracemalloc
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import tablib
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone

from memory.engine import hotness
from memory.io import export, formats, importer
from memory.models import ProductMemoryEntry
from memory.engine.memory import ProductMemory
from memory.engine.tiers import cache_key
from memory.io.export import iter_export
from memory.io.importer import import_entries
from memory.io.schema import EXPORT_FIELDS, ImportFileError, exported_versions

from tests.helpers import (
    FORMULA_TEXTS, ROUND_TRIP_TEXTS, SPREADSHEET_TRIGGERS, T0, make_entries, make_formula_entries, snapshot_table,
)

pytestmark = pytest.mark.django_db


def export_text(fmt, **kwargs):
    return "".join(iter_export(fmt, **kwargs))


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_round_trip_export_clear_import_gives_back_equal_entries(fmt, redis_client):
    make_entries(5)
    make_entries(2, prefix="OTHER", kind="faq")
    before = snapshot_table()
    text = export_text(fmt)
    ProductMemory().clear()

    report = import_entries(io.StringIO(text), fmt)

    assert report.ok and (report.rows, report.created, report.updated) == (7, 7, 0)
    assert snapshot_table() == before


def test_json_export_is_one_array_with_iso_datetimes():
    make_entries(2)
    data = json.loads(export_text("json"))
    assert [d["product_id"] for d in data] == ["SKU00000", "SKU00001"]
    assert list(data[0]) == EXPORT_FIELDS
    assert data[0]["created_at"] == "2026-11-20T12:30:15.123456+00:00"
    assert data[0]["last_hit_at"] is None
    assert json.loads(export_text("json", limit=1))[0]["product_id"] == "SKU00000"


def test_empty_export_is_still_valid_in_each_format():
    assert json.loads(export_text("json")) == []
    assert export_text("jsonl") == ""
    assert list(csv.reader(io.StringIO(export_text("csv")))) == [EXPORT_FIELDS]


def test_csv_export_holds_json_text_in_payload_cells():
    make_entries(1)
    rows = list(csv.DictReader(io.StringIO(export_text("csv"))))
    assert json.loads(rows[0]["payload"])["description"] == "<b>d</b>\nlinha 2, com vírgula"
    assert rows[0]["last_hit_at"] == ""


def test_a_carriage_return_inside_a_csv_text_stays_in_its_cell(redis_client):
    make_formula_entries(["a\rb", "c\r\nd"])
    before = snapshot_table()
    text = export_text("csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert sorted(row["product_id"] for row in rows) == ["a\rb", "c\r\nd"]
    ProductMemory().clear()
    assert import_entries(io.StringIO(text), "csv").ok
    assert snapshot_table() == before


def test_csv_export_quotes_every_cell_a_spreadsheet_would_run_as_a_formula():
    make_formula_entries()
    rows = list(csv.DictReader(io.StringIO(export_text("csv"), newline="")))
    assert sorted(row["product_id"] for row in rows) == sorted("'" + text for text in FORMULA_TEXTS)
    assert sorted(row["generator_version"] for row in rows) == sorted("'" + text for text in FORMULA_TEXTS)
    assert [cell for row in rows for cell in row.values() if cell.startswith(SPREADSHEET_TRIGGERS)] == []
    # The payload is one JSON text: its nested texts are inside it, behind a brace.
    assert {json.loads(row["payload"])["bullet_points"][0] for row in rows} == set(FORMULA_TEXTS)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_exports_hold_formula_texts_as_they_are(fmt):
    make_formula_entries()
    text = export_text(fmt)
    data = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    assert sorted(row["product_id"] for row in data) == sorted(FORMULA_TEXTS)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_round_trip_gives_back_formula_and_quoted_texts_exactly(fmt, redis_client):
    make_formula_entries(ROUND_TRIP_TEXTS)
    before = snapshot_table()
    text = export_text(fmt)
    ProductMemory().clear()

    report = import_entries(io.StringIO(text), fmt)

    assert report.ok, report.errors
    assert snapshot_table() == before
    assert sorted(before) == sorted((text, "main_content") for text in ROUND_TRIP_TEXTS)


def test_a_leading_tab_or_carriage_return_is_trimmed_alike_from_json_and_csv(redis_client):
    """The row schema trims text columns in every format; the CSV escape changes nothing to that."""
    make_formula_entries(["\tx", "\ry"])
    tables = {}
    for fmt in ("json", "csv"):
        text = export_text(fmt)
        ProductMemory().clear()
        import_entries(io.StringIO(text), fmt)
        tables[fmt] = snapshot_table()
        ProductMemory().clear()
        make_formula_entries(["\tx", "\ry"])
    assert tables["csv"] == tables["json"]
    assert sorted(tables["csv"]) == [("x", "main_content"), ("y", "main_content")]
    assert tables["csv"][("x", "main_content")]["payload"]["bullet_points"][0] == "\tx"  # JSON text keeps it


def test_export_respects_a_queryset_and_limit():
    make_entries(5)
    qs = ProductMemoryEntry.objects.filter(product_id__in=["SKU00001", "SKU00003", "SKU00004"])
    lines = export_text("jsonl", queryset=qs, limit=2).splitlines()
    assert [json.loads(line)["product_id"] for line in lines] == ["SKU00001", "SKU00003"]


@pytest.mark.parametrize("kwargs, field", [
    ({"fmt": "xml"}, "format"), ({"fmt": "json", "limit": 0}, "limit"),
    ({"fmt": "json", "limit": "10"}, "limit"), ({"fmt": "json", "limit": True}, "limit"),
])
def test_bad_export_arguments_name_the_field(kwargs, field):
    fmt = kwargs.pop("fmt")
    with pytest.raises(ValueError, match=field):
        list(iter_export(fmt, **kwargs))


def test_format_helpers_map_formats_to_content_types_extensions_and_file_names():
    assert formats.content_type("jsonl") == "application/x-ndjson"
    assert formats.filename_extension("csv") == "csv"
    assert formats.format_from_filename("memory-20261125T163000Z.jsonl.gz") == "jsonl"
    assert formats.format_from_filename("planilha.XLSX") == "xlsx"
    assert formats.format_from_filename("notes.txt") is None
    assert formats.export_filename("json", T0) == "memory-export-20261120T123015Z.json"


def test_xlsx_in_the_admin_layout_is_imported(tmp_path):
    """The admin (django-import-export) writes the same columns, plus id/title, JSON as text,
    datetimes as naive local time (Excel keeps no microseconds); an empty cell is no value."""
    make_entries(2, last_hit_at=datetime(2026, 11, 21, 8, 0, 5, tzinfo=dt_timezone.utc))
    make_entries(1, prefix="NOHIT")
    before = snapshot_table()
    dataset = tablib.Dataset(headers=["id", *EXPORT_FIELDS, "title"])
    local = timezone.get_current_timezone()
    for e in ProductMemoryEntry.objects.order_by("id"):
        dataset.append([
            e.id, e.product_id, e.kind, json.dumps(e.payload, ensure_ascii=False),
            json.dumps(e.source_data, ensure_ascii=False), e.input_fingerprint, e.generator_version,
            e.tokens_prompt, e.tokens_completion, e.tokens_cached, e.tokens_reasoning, e.hit_count, e.tokens_saved,
            e.created_at.isoformat(), e.updated_at.isoformat(),
            e.last_hit_at.astimezone(local).replace(tzinfo=None) if e.last_hit_at else None,
            e.hotness, e.hotness_at.isoformat() if e.hotness_at else None,
            e.expires_at.isoformat(), e.family_id, e.origin, e.author, e.approved, e.approved_by, None,
            json.dumps(exported_versions(e.versions.all()), ensure_ascii=False), e.title,
        ])
    path = tmp_path / "entradas.xlsx"
    path.write_bytes(dataset.export("xlsx"))
    ProductMemoryEntry.objects.all().delete()

    report = import_entries(path)

    assert report.ok and report.created == 3
    assert snapshot_table() == before


def test_admin_csv_with_local_naive_datetimes_and_empty_optional_cells_is_imported():
    text = (
        "id,product_id,title,kind,payload,source_data,tokens_prompt,hit_count,created_at,expires_at\n"
        '9,ABC123,x,,"{""title"": ""Tênis""}",,12,,2026-11-20 09:30:00,\n'
    )
    started = timezone.now()
    report = import_entries(io.BytesIO(text.encode("utf-8-sig")), "csv")
    assert report.ok, report.errors
    entry = ProductMemoryEntry.objects.get(product_id="ABC123")
    assert entry.kind == "main_content" and entry.title == "Tênis"
    assert entry.source_data == {} and entry.tokens_prompt == 12 and entry.hit_count == 0
    # 09:30 in America/Sao_Paulo (UTC-3) is 12:30 UTC.
    assert entry.created_at == datetime(2026, 11, 20, 12, 30, tzinfo=dt_timezone.utc)
    assert entry.expires_at >= started + timedelta(seconds=7_776_000)
    assert entry.generator_version  # the current generator


def test_a_file_with_bad_rows_imports_nothing_and_names_each_row():
    make_entries(1)
    before = snapshot_table()
    good = {"product_id": "NEW1", "payload": {"title": "ok"}}
    lines = [
        good,
        {"product_id": "", "payload": {"title": "x"}},
        {"product_id": "NEW3", "payload": "[1, 2]"},
        {"product_id": "NEW4", "payload": {"t": 1}, "tokens_prompt": -5, "expires_at": "amanhã"},
        {"product_id": "SKU00000", "payload": {"title": "would update"}},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{not json\n"

    report = import_entries(io.StringIO(text), "jsonl")

    assert not report.ok
    assert report.created == report.updated == 0
    numbers = [n for n, _ in report.errors]
    assert numbers == [2, 3, 4, 6]
    messages = dict(report.errors)
    assert "product_id" in messages[2]
    assert "payload" in messages[3]
    assert "tokens_prompt" in messages[4] and "expires_at" in messages[4]
    assert "JSON" in messages[6]
    assert snapshot_table() == before


def test_payload_over_the_size_limit_is_a_bad_row():
    with override_settings(MEMORY_MAX_PAYLOAD_BYTES=100):
        report = import_entries(io.StringIO(json.dumps([{"product_id": "A", "payload": {"t": "x" * 200}}])), "json")
    assert report.error_count == 1 and "payload" in report.errors[0][1] and "100" in report.errors[0][1]
    assert not ProductMemoryEntry.objects.exists()


def test_dry_run_reports_what_would_happen_and_writes_nothing():
    make_entries(2)
    before = snapshot_table()
    data = [{"product_id": "SKU00000", "payload": {"title": "novo"}}, {"product_id": "NEW", "payload": {}}]
    report = import_entries(io.StringIO(json.dumps(data)), "json", dry_run=True)
    assert report.ok and report.dry_run and (report.created, report.updated) == (1, 1)
    assert snapshot_table() == before


def test_import_updates_existing_entries_and_evicts_cached_copies(redis_client):
    memory = ProductMemory()
    memory.save_product_data("ABC123", {"title": "antigo"})
    assert memory.get_product_data("ABC123").content["title"] == "antigo"
    key = cache_key(("ABC123", "main_content"))
    assert caches["memory_l2"].get(key) is not None
    data = [{"product_id": "ABC123", "payload": {"title": "novo"}, "generator_version": memory.generator_version}]

    report = import_entries(io.StringIO(json.dumps(data)), "json")

    assert (report.created, report.updated) == (0, 1)
    assert caches["memory_l2"].get(key) is None and caches["memory_l1"].get(key) is None
    assert memory.get_product_data("ABC123").content["title"] == "novo"


def test_later_row_wins_when_a_key_repeats():
    data = [{"product_id": "A", "payload": {"v": 1}}, {"product_id": "A", "payload": {"v": 2}}]
    report = import_entries(io.StringIO(json.dumps(data)), "json")
    assert report.ok
    assert ProductMemoryEntry.objects.get(product_id="A").payload == {"v": 2}


def test_gzipped_jsonl_is_recognised_by_content(tmp_path):
    make_entries(2)
    before = snapshot_table()
    path = tmp_path / "memory.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(export_text("jsonl"))
    ProductMemoryEntry.objects.all().delete()
    assert import_entries(path).created == 2
    assert snapshot_table() == before


@pytest.mark.parametrize("fmt, content, message", [
    ("json", b'{"product_id": "A"}', "lista"),
    ("json", b'[{"product_id": "A", "payload": {}}, {"product_id": ', "JSON inválido"),
    ("csv", b"sku,title\nA,b\n", "product_id"),
    ("csv", b"", "vazio"),
    ("xlsx", b"not a zip", "XLSX"),
    ("jsonl", b"\xff\xfe\x00garbage", "UTF-8"),
])
def test_unreadable_files_raise_one_clear_error_and_change_nothing(fmt, content, message):
    make_entries(1)
    before = snapshot_table()
    with pytest.raises(ImportFileError, match=message):
        import_entries(io.BytesIO(content), fmt)
    assert snapshot_table() == before


def test_missing_file_and_unknown_format_are_clear_errors(tmp_path):
    with pytest.raises(ImportFileError, match="não foi possível ler"):
        import_entries(tmp_path / "nada.json")
    (tmp_path / "dados.txt").write_text("[]")
    with pytest.raises(ValueError, match="format"):
        import_entries(tmp_path / "dados.txt")
    with pytest.raises(ValueError, match="format"):
        import_entries(tmp_path / "dados.txt", "yaml")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_and_import_stream_in_bounded_memory(fmt, tmp_path, monkeypatch):
    """5,000 entries of ~4 KB (~20 MB of text) read and written 100 at a time: the peak
    stays a small fraction of the data (a batch, not the file)."""
    monkeypatch.setattr(export, "EXPORT_CHUNK_ROWS", 100)
    monkeypatch.setattr(importer, "IMPORT_BATCH_ROWS", 100)
    monkeypatch.setattr(importer, "COPY_BATCH_ROWS", 100)
    big = {"title": "Produto", "description": "x" * 4000}
    make_entries(5000, payload=big)

    tracemalloc.start()
    total = 0
    for chunk in iter_export(fmt):
        total += len(chunk)
    _, export_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > 20_000_000
    assert export_peak < total / 5

    path = tmp_path / f"all.{fmt}"
    export.write_export(fmt, path)
    ProductMemoryEntry.objects.all().delete()
    tracemalloc.start()
    report = import_entries(path)
    _, import_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.created == 5000
    assert import_peak < total / 5
    print(f"{fmt}: {total} bytes, export peak {export_peak}, import peak {import_peak}")
    assert ProductMemoryEntry.objects.count() == 5000


def test_a_file_written_before_the_usage_details_imports_with_zero_for_them(redis_client):
    """An export of the release before tokens_cached and tokens_reasoning: the columns are absent."""
    make_entries(2)
    older = [{k: v for k, v in row.items() if k not in ("tokens_cached", "tokens_reasoning")}
             for row in json.loads(export_text("json"))]
    ProductMemory().clear()
    report = import_entries(io.StringIO(json.dumps(older)), "json")
    assert report.ok and report.created == 2
    rows = ProductMemoryEntry.objects.order_by("product_id")
    assert [(e.tokens_prompt, e.tokens_cached, e.tokens_reasoning) for e in rows] == [(100, 0, 0), (101, 0, 0)]
    header = "product_id,payload,tokens_prompt,tokens_completion\n"
    report = import_entries(io.StringIO(header + 'CSV-1,"{""title"": ""x""}",7,3\n'), "csv")
    assert report.ok
    assert ProductMemoryEntry.objects.get(product_id="CSV-1").tokens_cached == 0


def test_exports_hold_the_usage_details_the_round_trips_above_give_back():
    make_entries(3)
    assert [(row["tokens_cached"], row["tokens_reasoning"]) for row in json.loads(export_text("json"))] == [
        (40, 20), (41, 21), (42, 22)]
    header = next(csv.reader(io.StringIO(export_text("csv"))))
    assert header.index("tokens_cached") == header.index("tokens_completion") + 1


def test_exports_hold_the_hotness_and_a_restore_keeps_the_hot_entries_hot(redis_client):
    """Refresh-ahead and the Redis warm-up read the hottest first: a restore must not make every
    entry cold. The round trips above compare hotness and hotness_at too (make_entries sets them)."""
    make_entries(4)
    rows = json.loads(export_text("json"))
    assert [(row["hotness"], row["hotness_at"]) for row in rows] == [
        (0.0, None), (1.75, (T0 + timedelta(days=1, microseconds=1)).isoformat()), (0.0, None),
        (4.75, (T0 + timedelta(days=1, microseconds=3)).isoformat())]
    header = next(csv.reader(io.StringIO(export_text("csv"))))
    assert header.index("hotness") == header.index("last_hit_at") + 1
    assert header.index("hotness_at") == header.index("hotness") + 1
    text = export_text("csv")
    ProductMemory().clear()
    assert import_entries(io.StringIO(text), "csv").ok
    when = T0 + timedelta(days=2)
    order = list(ProductMemoryEntry.objects.annotate(heat=hotness.decayed(when)).filter(heat__gt=0)
                 .order_by("-heat").values_list("product_id", flat=True))
    assert order == ["SKU00003", "SKU00001"]


def test_a_file_written_before_the_hotness_imports_cold():
    make_entries(2)
    older = [{k: v for k, v in row.items() if k not in ("hotness", "hotness_at")}
             for row in json.loads(export_text("json"))]
    ProductMemory().clear()
    assert import_entries(io.StringIO(json.dumps(older)), "json").ok
    assert list(ProductMemoryEntry.objects.values_list("hotness", "hotness_at")) == [(0.0, None), (0.0, None)]
