"""Hostile import files at full size: what ``manage_memory import`` does with each, how long it
takes (wall clock and CPU) and its peak RSS (the figures of docs/reliability.md, "Hostile files").

Run by hand from the repository root, with the database of ``DATABASE_URL`` migrated::

    .venv/bin/python bench/import_bombs.py                 # every attack
    .venv/bin/python bench/import_bombs.py --only line,xlsx-cell

Each bomb is built in ``var/bench/bombs/`` (small on disk: repeated gzip members of 1 MiB of one
byte, or a zip member streamed), then ``manage.py manage_memory import`` runs in a child whose
peak RSS is read with ``getrusage(RUSAGE_CHILDREN)``. Results in ``var/bench/import_bombs.json``.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "var" / "bench"
MIB = 1024 * 1024
HEADER = b"product_id,payload\n"


def gzip_file(path: Path, *parts) -> Path:
    """``parts``: bytes as they are, ``(byte, n)`` as ``n`` MiB of that byte."""
    with path.open("wb") as out:
        for part in parts:
            if isinstance(part, tuple):
                unit, mib = part
                member = gzip.compress(unit * MIB, 9)
                for _ in range(mib):
                    out.write(member)
            else:
                out.write(gzip.compress(part))
    return path


def xlsx_file(path: Path, cell_mib: int = 0, declaration: bytes = b"") -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["product_id", "payload"])
    workbook.active.append(["X-1", "MARKER"])
    plain = io.BytesIO()
    workbook.save(plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename != "xl/worksheets/sheet1.xml":
                target.writestr(item.filename, data)
                continue
            before, after = data.split(b"MARKER", 1)
            with target.open(item.filename, "w", force_zip64=True) as part:
                part.write(declaration + before)
                for _ in range(cell_mib):
                    part.write(b"A" * MIB)
                part.write(b"&lol9;" if declaration else b"")
                part.write(after)
    return path


LAUGHS = (b'<!DOCTYPE worksheet [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                     for i in range(1, 10)) + b"]>")
XXE = b'<!DOCTYPE worksheet [<!ENTITY lol9 SYSTEM "file:///etc/passwd">]>'

ATTACKS = {
    "baseline": ("an empty file: the command's own start and cost", "jsonl", lambda d: Path("/dev/null")),
    "line": ("a 2 GiB line (JSONL, gzip)", "jsonl", lambda d: gzip_file(d / "line.jsonl.gz", (b"A", 2048))),
    "newlines": ("1 GiB of newlines (JSONL, gzip)", "jsonl", lambda d: gzip_file(d / "nl.jsonl.gz", (b"\n", 1024))),
    "newlines-csv": ("1 GiB of newlines after a header (CSV, gzip)", "csv",
                     lambda d: gzip_file(d / "nl.csv.gz", HEADER, (b"\n", 1024))),
    "csv-field": ("a CSV field of 1 GiB (quoted newlines, gzip)", "csv",
                  lambda d: gzip_file(d / "field.csv.gz", HEADER + b'X-1,"', (b"\n", 1024))),
    "json-string": ("a JSON string of 2 GiB (gzip)", "json",
                    lambda d: gzip_file(d / "string.json.gz", b'[{"product_id": "X-1", "payload": "', (b"A", 2048))),
    "total": ("3 GiB of newlines, past MEMORY_IMPORT_MAX_BYTES (JSONL, gzip)", "jsonl",
              lambda d: gzip_file(d / "total.jsonl.gz", (b"\n", 3072))),
    "dev-zero-jsonl": ("/dev/zero as JSONL", "jsonl", lambda d: Path("/dev/zero")),
    "dev-zero-csv": ("/dev/zero as CSV", "csv", lambda d: Path("/dev/zero")),
    "dev-zero-json": ("/dev/zero as JSON", "json", lambda d: Path("/dev/zero")),
    "dev-zero-xlsx": ("/dev/zero as XLSX", "xlsx", lambda d: Path("/dev/zero")),
    "xlsx-cell": ("an XLSX cell of 1.5 GiB", "xlsx", lambda d: xlsx_file(d / "cell.xlsx", cell_mib=1536)),
    "xlsx-laughs": ("an XLSX with the billion laughs", "xlsx", lambda d: xlsx_file(d / "laughs.xlsx", declaration=LAUGHS)),
    "xlsx-xxe": ("an XLSX with an external entity (XXE)", "xlsx", lambda d: xlsx_file(d / "xxe.xlsx", declaration=XXE)),
}

WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(done.returncode, time.perf_counter() - start, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)\n"
    "print(done.stderr.strip())\n"
)


def run(name: str, directory: Path) -> dict:
    what, fmt, build = ATTACKS[name]
    path = build(directory)
    size = path.stat().st_size if path.is_file() else None
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, sys.executable, "manage.py", "manage_memory", "import",
         "--input-file", str(path), "--format", fmt],
        cwd=ROOT, capture_output=True, text=True,
    )
    first, *said = done.stdout.splitlines()
    code, seconds, rss_kib, cpu = first.split()
    return {"attack": name, "what": what, "file_bytes": size, "exit": int(code), "seconds": round(float(seconds), 2),
            "cpu_seconds": round(float(cpu), 2),
            "peak_rss_mib": round(int(rss_kib) / 1024), "said": said[-1] if said else "",
            "traceback": "Traceback" in done.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated attacks: " + ", ".join(ATTACKS))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(ATTACKS)
    directory = OUT / "bombs"
    directory.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        result = run(name, directory)
        results.append(result)
        print(f"{result['what']:<62} exit {result['exit']}  {result['seconds']:>6.2f} s "
              f"(CPU {result['cpu_seconds']:>6.2f} s)  "
              f"{result['peak_rss_mib']:>4} MiB  {result['said']}", flush=True)
    (OUT / "import_bombs.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    for path in directory.iterdir():
        path.unlink()


if __name__ == "__main__":
    main()
