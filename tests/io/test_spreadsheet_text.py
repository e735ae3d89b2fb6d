"""The escape of text cells in CSV and XLSX (formula injection), and its inverse, as plain tables."""
from itertools import product

import pytest

from memory.io.formats import from_spreadsheet_text, spreadsheet_text

from tests.helpers import FORMULA_TEXTS, QUOTED_TEXTS, SPREADSHEET_TRIGGERS


@pytest.mark.parametrize("value, cell", [
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("\nx", "'\nx"),              # XLSX reads a carriage return back as a line feed
    ("'=x", "''=x"),              # quotes, then a trigger: one more quote
    ("''+x", "'''+x"),
    ("'\tx", "''\tx"),
    ("'plain", "'plain"),         # a quote before anything else stays as it is
    ("'", "'"),
    ("''", "''"),
    ("plain = text", "plain = text"),
    ("", ""),
    ("{\"title\": \"=x\"}", "{\"title\": \"=x\"}"),  # JSON text starts with a brace
    (-5, -5),                     # numbers are not text
    (None, None),
])
def test_spreadsheet_text_quotes_what_a_spreadsheet_would_run(value, cell):
    assert spreadsheet_text(value) == cell
    assert from_spreadsheet_text(cell) == value


@pytest.mark.parametrize("cell, value", [
    ("'=x", "=x"),   # a cell someone quoted by hand is the formula's text
    ("'plain", "'plain"),
    ("=x", "=x"),    # a file not written by the export: taken as it is
    (12.0, 12.0),
])
def test_from_spreadsheet_text_reads_cells_written_elsewhere(cell, value):
    assert from_spreadsheet_text(cell) == value


def test_every_short_text_survives_the_escape_and_no_cell_starts_a_formula():
    alphabet = ["'", "=", "-", "@", "\t", "\r", "a", " "]
    texts = ["".join(chars) for n in range(5) for chars in product(alphabet, repeat=n)]
    texts += list(FORMULA_TEXTS) + list(QUOTED_TEXTS)
    cells = [spreadsheet_text(text) for text in texts]
    assert [from_spreadsheet_text(cell) for cell in cells] == texts
    assert len(set(cells)) == len(set(texts))
    assert not [cell for cell in cells if cell.startswith(SPREADSHEET_TRIGGERS)]
