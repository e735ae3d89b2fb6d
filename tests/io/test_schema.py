"""One row schema: the admin's import and ``manage_memory import`` (so the API's and the
backups' format too) accept and refuse the same rows, with the same words."""
import csv
import io
import json

import pytest
from import_export.formats.base_formats import CSV, JSON

from memory.admin.resources import ProductMemoryEntryResource
from memory.io.importer import import_entries
from memory.io.schema import EXPORT_FIELDS, RowError, clean_row
from memory.models import ProductMemoryEntry

pytestmark = pytest.mark.django_db

GOOD = {"product_id": "OK-1", "payload": {"title": "Caneca"}}

# Each case: a row (JSON values) that both ways must refuse, and the columns they must name.
BAD_ROWS = {
    "NUL in product_id": ({"product_id": "A\x00B", "payload": {"t": 1}}, {"product_id"}),
    "NUL in kind": ({"product_id": "A", "kind": "faq\x00", "payload": {"t": 1}}, {"kind"}),
    "NUL in payload": ({"product_id": "A", "payload": {"title": "a\x00b"}}, {"payload"}),
    "NUL in a payload key": ({"product_id": "A", "payload": {"ti\x00tle": "a"}}, {"payload"}),
    "NUL in source_data": ({"product_id": "A", "payload": {"t": 1}, "source_data": {"sku": "\x00"}}, {"source_data"}),
    "NUL in generator_version": ({"product_id": "A", "payload": {"t": 1}, "generator_version": "x\x00"},
                                 {"generator_version"}),
    "tokens above PostgreSQL integer": ({"product_id": "A", "payload": {"t": 1}, "tokens_prompt": 2**31},
                                        {"tokens_prompt"}),
    "tokens_completion above integer": ({"product_id": "A", "payload": {"t": 1}, "tokens_completion": 2**31 + 5},
                                        {"tokens_completion"}),
    "cached tokens above the prompt's": ({"product_id": "A", "payload": {"t": 1}, "tokens_prompt": 10,
                                         "tokens_cached": 11}, {"tokens_cached"}),
    "cached tokens without prompt tokens": ({"product_id": "A", "payload": {"t": 1}, "tokens_cached": 1},
                                            {"tokens_cached"}),
    "reasoning tokens above the completion's": ({"product_id": "A", "payload": {"t": 1}, "tokens_completion": 5,
                                                 "tokens_reasoning": 6}, {"tokens_reasoning"}),
    "reasoning tokens above integer": ({"product_id": "A", "payload": {"t": 1}, "tokens_reasoning": 2**31},
                                       {"tokens_reasoning"}),
    "hits above PostgreSQL bigint": ({"product_id": "A", "payload": {"t": 1}, "hit_count": 2**63}, {"hit_count"}),
    "negative counter": ({"product_id": "A", "payload": {"t": 1}, "tokens_saved": -1}, {"tokens_saved"}),
    "fractional counter": ({"product_id": "A", "payload": {"t": 1}, "hit_count": "1.5"}, {"hit_count"}),
    "text counter": ({"product_id": "A", "payload": {"t": 1}, "tokens_prompt": "muitos"}, {"tokens_prompt"}),
    "product_id too long": ({"product_id": "P" * 256, "payload": {"t": 1}}, {"product_id"}),
    "no product_id": ({"product_id": "", "payload": {"t": 1}}, {"product_id"}),
    "no payload": ({"product_id": "A", "payload": ""}, {"payload"}),
    "payload not an object": ({"product_id": "A", "payload": "[1, 2]"}, {"payload"}),
    "payload not JSON": ({"product_id": "A", "payload": "{nope"}, {"payload"}),
    "payload with NaN": ({"product_id": "A", "payload": '{"price": NaN}'}, {"payload"}),
    "source_data too large": ({"product_id": "A", "payload": {"t": 1}, "source_data": {"x": "y" * 300_000}},
                              {"source_data"}),
    "bad date": ({"product_id": "A", "payload": {"t": 1}, "expires_at": "amanhã"}, {"expires_at"}),
    "negative hotness": ({"product_id": "A", "payload": {"t": 1}, "hotness": -0.5}, {"hotness"}),
    "hotness not a number": ({"product_id": "A", "payload": {"t": 1}, "hotness": "quente"}, {"hotness"}),
    "infinite hotness": ({"product_id": "A", "payload": {"t": 1}, "hotness": "inf"}, {"hotness"}),
    "NaN hotness": ({"product_id": "A", "payload": {"t": 1}, "hotness": "NaN"}, {"hotness"}),
    "bad hotness_at": ({"product_id": "A", "payload": {"t": 1}, "hotness": 2, "hotness_at": "ontem"}, {"hotness_at"}),
    "several at once": ({"product_id": "", "payload": "[]", "tokens_prompt": -2, "created_at": "ontem"},
                        {"product_id", "payload", "tokens_prompt", "created_at"}),
}

# Rows both ways accept.
GOOD_ROWS = {
    "empty payload object": {"product_id": "A", "payload": {}},
    "escaped backslash, not a NUL": {"product_id": "A", "payload": {"path": "C:\\u0000"}},
    "counters at their maximum": {"product_id": "A", "payload": {"t": 1}, "tokens_prompt": 2**31 - 1,
                                  "tokens_cached": 2**31 - 1, "hit_count": 2**63 - 1},
    "a hotness as of an instant": {"product_id": "A", "payload": {"t": 1}, "hotness": 12.5,
                                   "hotness_at": "2026-11-25T16:30:00+00:00"},
    "a pt-BR decimal hotness": {"product_id": "A", "payload": {"t": 1}, "hotness": "12,5"},
    "usage details within their counts": {"product_id": "A", "payload": {"t": 1}, "tokens_prompt": 10,
                                          "tokens_cached": 10, "tokens_completion": 5, "tokens_reasoning": 5},
}
# Numbers as spreadsheets and JSON hand them back (in CSV "7.0" is text, and refused by both).
GOOD_JSON_ROWS = {
    "whole-number floats": {"product_id": 12345.0, "payload": {"t": 1}, "tokens_prompt": 7.0},
}


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})
    return out.getvalue()


def as_json(rows: list[dict]) -> str:
    # Every column in every object (django-import-export reads no ragged JSON), payload and
    # source_data as the admin exports them: JSON text (a NaN only survives that way).
    return json.dumps([
        {name: json.dumps(row[name]) if isinstance(row.get(name), dict) else row.get(name) for name in EXPORT_FIELDS}
        for row in rows
    ])


FORMATS = {"csv": (as_csv, CSV), "json": (as_json, JSON)}


def command_errors(text: str, fmt: str) -> dict[int, str]:
    report = import_entries(io.StringIO(text), fmt, dry_run=True)
    return dict(report.errors)


def admin_errors(text: str, fmt: str) -> dict[int, str]:
    dataset = FORMATS[fmt][1]().create_dataset(text)
    result = ProductMemoryEntryResource().import_data(dataset, dry_run=True)
    assert not result.has_errors(), [e.traceback for row in result.rows for e in row.errors]
    return {
        row.number: "; ".join(f"{name}: {message}" for name, messages in row.error.message_dict.items()
                              for message in messages)
        for row in result.invalid_rows
    }


# ijson stops at an integer beyond 64 bits, so in JSON the command refuses the whole file:
# test_a_number_beyond_64_bits_in_json_is_refused_by_both covers that case.
@pytest.mark.parametrize("fmt, case", [
    (fmt, case) for case in BAD_ROWS for fmt in FORMATS
    if not (fmt == "json" and case == "hits above PostgreSQL bigint")
])
def test_a_bad_row_is_refused_by_both_with_the_same_words(case, fmt):
    row, columns = BAD_ROWS[case]
    text = FORMATS[fmt][0]([GOOD, row])

    by_command = command_errors(text, fmt)
    by_admin = admin_errors(text, fmt)

    assert list(by_command) == [2]
    assert by_admin == by_command
    named = {part.split(":", 1)[0] for part in by_command[2].split("; ")}
    assert named == columns
    assert not ProductMemoryEntry.objects.exists()


def test_a_number_beyond_64_bits_in_json_is_refused_by_both():
    text = as_json([GOOD, {"product_id": "A", "payload": {"t": 1}, "hit_count": 2**63}])
    with pytest.raises(ValueError, match="JSON"):
        command_errors(text, "json")
    assert list(admin_errors(text, "json")) == [2]


@pytest.mark.parametrize("fmt, case", [(f, c) for f in FORMATS for c in GOOD_ROWS] + [("json", c) for c in GOOD_JSON_ROWS])
def test_a_good_row_is_taken_by_both(case, fmt):
    text = FORMATS[fmt][0]([{**GOOD_ROWS, **GOOD_JSON_ROWS}[case]])
    assert command_errors(text, fmt) == {}
    assert admin_errors(text, fmt) == {}


def test_clean_row_names_every_bad_column_and_fills_the_defaults():
    with pytest.raises(RowError) as refused:
        clean_row({"product_id": "", "payload": {"x": float("inf")}, "hit_count": True})
    assert set(refused.value.problems) == {"product_id", "payload", "hit_count"}
    assert str(refused.value).startswith("product_id: obrigatório; payload: contém NaN ou Infinity")

    row = clean_row({"product_id": " ABC ", "payload": '{"title": "x"}'})
    assert row["product_id"] == "ABC" and row["kind"] == "main_content" and row["source_data"] == {}
    assert row["tokens_prompt"] == row["hit_count"] == 0 and row["last_hit_at"] is None
    assert row["tokens_cached"] == row["tokens_reasoning"] == 0
    assert len(row["input_fingerprint"]) == 64 and row["generator_version"]
    assert row["expires_at"] > row["created_at"] == row["updated_at"]


def test_a_hotness_is_a_finite_non_negative_number_as_of_an_instant():
    now = clean_row(GOOD)["created_at"]
    row = clean_row({**GOOD, "hotness": "7,25", "hotness_at": "2026-11-25T16:30:00Z"})
    assert row["hotness"] == 7.25 and row["hotness_at"].isoformat() == "2026-11-25T16:30:00+00:00"
    assert clean_row({**GOOD, "hotness": 3})["hotness"] == 3.0
    # without its instant a hotness would read 0 (memory.engine.hotness): it is as of now
    assert clean_row({**GOOD, "hotness": 2.5})["hotness_at"] >= now
    row = clean_row(GOOD)
    assert (row["hotness"], row["hotness_at"]) == (0.0, None)
    for bad, words in [(True, "deve ser um número"), (-1, "não pode ser negativo"), ("1e400", "finito"),
                       ("1,000.5", "deve ser um número")]:
        with pytest.raises(RowError) as refused:
            clean_row({**GOOD, "hotness": bad})
        assert set(refused.value.problems) == {"hotness"} and words in str(refused.value), bad
