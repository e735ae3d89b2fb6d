"""Hostile files against ``manage_memory import`` / ``restore``, the admin's import and the
readers: decompression bombs, huge lines, fields, strings and cells, endless devices, entity
declarations, a sheet that lies about its size. Each is refused with one pt-BR line, in bounded
memory, and nothing is written.

The bombs are built here, small on disk: a gzip member of 1 MiB of one byte is ~1 KB, and
concatenated members are one gzip stream (RFC 1952), so a 64 KB file inflates to 64 MiB."""
import gzip
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from openpyxl import Workbook

from memory.io.readers import Source, read_rows
from memory.io.schema import ImportFileError
from memory.models import ProductMemoryEntry

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
# Peak RSS a refused bomb may cost the whole command (Python, Django and the readers).
MAX_RSS_BYTES = 300 * MIB
CONTENT = {"title": "Produto", "description": "d", "bullet_points": ["a"], "seo_keywords": ["b"]}

# Runs the command given on its command line, then prints the child's peak RSS (KiB on Linux).
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stdout.write(done.stdout)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def gzip_of(*parts: bytes | tuple[bytes, int]) -> bytes:
    """A gzip stream of the parts: bytes as they are, ``(byte, n)`` as ``n`` MiB of that byte."""
    out = io.BytesIO()
    for part in parts:
        if isinstance(part, tuple):
            unit, mib = part
            member = gzip.compress(unit * MIB, 9)
            out.write(member * mib)
        else:
            out.write(gzip.compress(part))
    return out.getvalue()


def xlsx_with(rows: list[list], *, replace: dict[str, tuple[bytes, bytes, int]] | None = None,
              dimension: str | None = None) -> bytes:
    """An XLSX of ``rows``; ``replace`` maps a part to ``(marker, byte, n)``, writing ``n`` MiB of
    ``byte`` (streamed into the zip) where the marker was; ``dimension`` rewrites the declared one."""
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    plain = io.BytesIO()
    workbook.save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if dimension and item.filename == "xl/worksheets/sheet1.xml":
                start = data.index(b'<dimension ref="') + len(b'<dimension ref="')
                data = data[:start] + dimension.encode() + data[data.index(b'"', start):]
            if replace and item.filename in replace:
                marker, unit, mib = replace[item.filename]
                before, after = data.split(marker, 1)
                with target.open(item.filename, "w", force_zip64=True) as part:
                    part.write(before)
                    for _ in range(mib):
                        part.write(unit * MIB)
                    part.write(after)
            else:
                target.writestr(item.filename, data)
    return out.getvalue()


def doctype_xlsx(declaration: bytes) -> bytes:
    """An XLSX whose sheet starts with ``declaration`` (a DOCTYPE; openpyxl writes strings inline)."""
    content = xlsx_with([["product_id", "payload"], ["X-1", "MARKER"]])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = declaration + data.replace(b"MARKER", b"&lol9;")
            target.writestr(item.filename, data)
    return out.getvalue()


BILLION_LAUGHS = (b'<!DOCTYPE sst [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10)) + b"]>")
XXE = b'<!DOCTYPE sst [<!ENTITY lol9 SYSTEM "file:///etc/passwd">]>'

HEADER = b"product_id,payload\n"
# name, content (None: /dev/zero), --format, extra environment, what the refusal names
BOMBS = [
    pytest.param("line.jsonl.gz", lambda: gzip_of((b"A", 64)), "jsonl", {}, "MEMORY_IMPORT_MAX_LINE_BYTES",
                 id="gzip-64mib-line-jsonl"),
    pytest.param("line.csv.gz", lambda: gzip_of(HEADER, (b"A", 64)), "csv", {}, "MEMORY_IMPORT_MAX_LINE_BYTES",
                 id="gzip-64mib-line-csv"),
    pytest.param("newlines.jsonl.gz", lambda: gzip_of((b"\n", 64)), "jsonl", {"MEMORY_IMPORT_MAX_BYTES": str(32 * MIB)},
                 "MEMORY_IMPORT_MAX_BYTES", id="gzip-64mib-newlines-over-the-total"),
    pytest.param("field.csv.gz", lambda: gzip_of(HEADER + b'X-1,"', (b"\n", 64)), "csv", {},
                 "MEMORY_IMPORT_MAX_FIELD_BYTES", id="gzip-csv-64mib-field"),
    pytest.param("string.json.gz", lambda: gzip_of(b'[{"product_id": "X-1", "payload": "', (b"A", 64)), "json", {},
                 "MEMORY_IMPORT_MAX_LINE_BYTES", id="gzip-json-64mib-string"),
    pytest.param("spaces.json.gz", lambda: gzip_of(b"[", (b" ", 64)), "json", {},
                 "MEMORY_IMPORT_MAX_LINE_BYTES", id="gzip-json-64mib-whitespace"),
    pytest.param(None, None, "jsonl", {}, "MEMORY_IMPORT_MAX_LINE_BYTES", id="dev-zero-jsonl"),
    pytest.param(None, None, "csv", {}, "MEMORY_IMPORT_MAX_LINE_BYTES", id="dev-zero-csv"),
    pytest.param(None, None, "xlsx", {}, "arquivo ilegível", id="dev-zero-xlsx"),
    pytest.param("cell.xlsx", lambda: xlsx_with([["product_id", "payload"], ["X-1", "MARKER"]],
                                                replace={"xl/worksheets/sheet1.xml": (b"MARKER", b"A", 64)}),
                 "xlsx", {}, "MEMORY_IMPORT_MAX_FIELD_BYTES", id="xlsx-64mib-cell"),
    pytest.param("laughs.xlsx", lambda: doctype_xlsx(BILLION_LAUGHS), "xlsx", {}, "ENTITY", id="xlsx-billion-laughs"),
    pytest.param("xxe.xlsx", lambda: doctype_xlsx(XXE), "xlsx", {}, "ENTITY", id="xlsx-xxe"),
]


@pytest.mark.parametrize("name, build, fmt, env, names", BOMBS)
def test_a_bomb_is_refused_by_manage_memory_import_in_one_line_in_bounded_memory_writing_nothing(
    transactional_db, process_env, tmp_path, name, build, fmt, env, names
):
    path = "/dev/zero" if name is None else tmp_path / name
    if name is not None:
        path.write_bytes(build())
        assert path.stat().st_size < 2 * MIB  # small on disk
    done = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, sys.executable, "manage.py", "manage_memory", "import",
         "--input-file", str(path), "--format", fmt],
        cwd=ROOT, env={**process_env, **env}, capture_output=True, text=True, timeout=300,
    )
    *said, rss = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert len(said) == 1 and said[0].startswith("CommandError: ") and names in said[0], said
    assert int(rss) < MAX_RSS_BYTES, f"peak RSS {int(rss) / MIB:.0f} MiB"
    assert not ProductMemoryEntry.objects.exists()


def test_restore_of_a_bomb_is_refused_in_one_line_and_writes_nothing(db, settings, tmp_path):
    settings.MEMORY_BACKUP_DIR = tmp_path
    (tmp_path / "memory-20261201T120000Z.jsonl.gz").write_bytes(gzip_of((b"A", 16)))
    with pytest.raises(CommandError) as info:
        call_command("manage_memory", "restore", stdout=io.StringIO(), stderr=io.StringIO())
    assert "MEMORY_IMPORT_MAX_LINE_BYTES" in str(info.value) and "\n" not in str(info.value)
    assert not ProductMemoryEntry.objects.exists()


# --- the limits, as settings ----------------------------------------------------------------------


def rows_of(content: bytes, fmt: str) -> list:
    return list(read_rows(Source(io.BytesIO(content)), fmt))


def test_the_limits_are_settings(settings):
    line = json.dumps({"product_id": "X-1", "payload": CONTENT}).encode() + b"\n"
    assert len(rows_of(line * 3, "jsonl")) == 3
    settings.MEMORY_IMPORT_MAX_LINE_BYTES = len(line) - 1
    with pytest.raises(ImportFileError, match="registro 1: .*MEMORY_IMPORT_MAX_LINE_BYTES"):
        rows_of(line * 3, "jsonl")
    settings.MEMORY_IMPORT_MAX_LINE_BYTES = len(line)
    settings.MEMORY_IMPORT_MAX_BYTES = 2 * len(line)
    with pytest.raises(ImportFileError, match="MEMORY_IMPORT_MAX_BYTES"):
        rows_of(line * 3, "jsonl")
    settings.MEMORY_IMPORT_MAX_BYTES = 3 * len(line)
    assert len(rows_of(line * 3, "jsonl")) == 3
    settings.MEMORY_IMPORT_MAX_FIELD_BYTES = 10
    with pytest.raises(ImportFileError, match="registro 2: campo com mais de 10 caracteres"):
        rows_of(b"product_id,payload\nX-1,{}\nX-2,0123456789A\n", "csv")


def test_a_record_of_a_json_array_past_the_line_limit_is_refused_naming_it(settings):
    settings.MEMORY_IMPORT_MAX_LINE_BYTES = 256 * 1024
    small = {"product_id": "X-1", "payload": CONTENT}
    content = json.dumps([small, small, {"product_id": "X-3", "payload": {"title": "A" * 400_000}}]).encode()
    with pytest.raises(ImportFileError, match="registro 3: "):
        rows_of(content, "json")


def test_a_csv_row_over_many_lines_counts_as_one_record(settings):
    settings.MEMORY_IMPORT_MAX_LINE_BYTES = 1000
    many_lines = b'product_id,payload\nX-1,"' + b"a\n" * 600 + b'"\n'
    with pytest.raises(ImportFileError, match="registro 1: "):
        rows_of(many_lines, "csv")


def test_empty_lines_cost_one_step_per_chunk_and_keep_quoted_line_breaks(settings):
    content = b'product_id,payload\n\n\n\r\n\nX-1,"{\n\n\n}"\n\n\n'
    assert rows_of(content, "csv") == [(1, {"product_id": "X-1", "payload": "{\n\n\n}"})]
    assert rows_of(b"\n" * (3 * 1024 * 1024), "jsonl") == []


# --- XLSX: every row, whatever the declared dimension; no entity -----------------------------------


def test_xlsx_import_reads_every_row_whatever_dimension_the_sheet_declares(db, tmp_path):
    rows = [["product_id", "payload"]] + [[f"DIM-{n}", json.dumps(CONTENT)] for n in range(1, 6)]
    path = tmp_path / "lies.xlsx"
    path.write_bytes(xlsx_with(rows, dimension="A1:B2"))
    out = io.StringIO()
    call_command("manage_memory", "import", "--input-file", str(path), "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue())["rows"] == 5
    assert ProductMemoryEntry.objects.filter(product_id__startswith="DIM-").count() == 5


@pytest.mark.parametrize("declaration", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_an_xlsx_declaring_entities_is_one_line_in_pt_br_not_a_parse_error(db, tmp_path, declaration):
    path = tmp_path / "entities.xlsx"
    path.write_bytes(doctype_xlsx(declaration))
    with pytest.raises(CommandError) as info:
        call_command("manage_memory", "import", "--input-file", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert str(info.value) == ("planilha XLSX recusada: a parte 'xl/worksheets/sheet1.xml' declara um DOCTYPE ou ENTITY "
                               "(entidades XML não são aceitas)")
    assert not ProductMemoryEntry.objects.exists()


def test_malformed_xml_in_an_xlsx_is_one_line(db, tmp_path):
    content = xlsx_with([["product_id", "payload"], ["X-1", "{}"]])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            target.writestr(item.filename, data[:-20] if item.filename == "xl/worksheets/sheet1.xml" else data)
    path = tmp_path / "broken.xlsx"
    path.write_bytes(out.getvalue())
    with pytest.raises(CommandError, match="XML malformado") as info:
        call_command("manage_memory", "import", "--input-file", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert "\n" not in str(info.value)


# --- the admin's import -----------------------------------------------------------------------


def admin_import(admin_client, name: str, content: bytes, fmt: str):
    formats = {"csv": "0", "json": "1", "xlsx": "2"}
    return admin_client.post(reverse("admin:memory_productmemoryentry_import"), {
        "format": formats[fmt], "resource": "0", "import_file": SimpleUploadedFile(name, content),
    })


@pytest.mark.parametrize("name, build, says", [
    pytest.param("cell.xlsx", lambda: xlsx_with([["product_id", "payload"], ["X-1", "MARKER"]],
                                                replace={"xl/worksheets/sheet1.xml": (b"MARKER", b"A", 64)}),
                 "MEMORY_IMPORT_MAX_FIELD_BYTES", id="xlsx-64mib-cell"),
    pytest.param("laughs.xlsx", lambda: doctype_xlsx(BILLION_LAUGHS), "DOCTYPE ou ENTITY", id="xlsx-billion-laughs"),
    pytest.param("xxe.xlsx", lambda: doctype_xlsx(XXE), "DOCTYPE ou ENTITY", id="xlsx-xxe"),
])
def test_the_admin_refuses_a_hostile_xlsx_with_the_readers_line_and_changes_nothing(admin_client, name, build, says):
    response = admin_import(admin_client, name, build(), "xlsx")
    assert response.status_code == 200
    html = response.content.decode()
    assert says in html and "Traceback" not in html and "ParseError" not in html
    assert response.context.get("confirm_form") is None
    assert not ProductMemoryEntry.objects.exists()


def test_the_admin_refuses_an_upload_past_its_limit_before_reading_it(admin_client, settings):
    settings.MEMORY_IMPORT_ADMIN_MAX_BYTES = 1000
    content = json.dumps([{"product_id": f"X-{n}", "payload": CONTENT} for n in range(20)]).encode()
    response = admin_import(admin_client, "big.json", content, "json")
    assert response.status_code == 200
    assert "MEMORY_IMPORT_ADMIN_MAX_BYTES" in response.content.decode()
    assert response.context.get("confirm_form") is None
    assert not ProductMemoryEntry.objects.exists()


def test_the_admin_reads_every_xlsx_row_whatever_dimension_the_sheet_declares(admin_client):
    rows = [["product_id", "payload"]] + [[f"DIM-{n}", json.dumps(CONTENT)] for n in range(1, 6)]
    response = admin_import(admin_client, "lies.xlsx", xlsx_with(rows, dimension="A1:B2"), "xlsx")
    assert response.status_code == 200
    result = response.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert result.totals["new"] == 5


def test_a_file_of_blank_lines_is_an_empty_import_read_once(db, monkeypatch, tmp_path):
    from memory.io import importer

    passes = []
    read = importer.read_rows
    monkeypatch.setattr(importer, "read_rows", lambda *a, **k: passes.append(1) or read(*a, **k))
    path = tmp_path / "blank.jsonl.gz"
    path.write_bytes(gzip_of((b"\n", 4)))
    report = importer.import_entries(path)
    assert (report.ok, report.rows, report.created, len(passes)) == (True, 0, 0, 1)
