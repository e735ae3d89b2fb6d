"""What `make demo` prints of its own: its banners, in pt-BR like the rest of the output."""
import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def recipe(target: str) -> list[str]:
    lines = MAKEFILE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        body.append(line.strip())
    return body


def test_the_demo_banners_are_in_portuguese():
    banners = [re.sub(r'^@echo "(.*)"$', r"\1", line) for line in recipe("demo") if line.startswith("@echo")]
    assert banners == [
        "== 1ª execução do catálogo: memória fria; uma geração por família de variantes (parent_sku), cada variante "
        "derivada dela (veja Tokens economizados por famílias) ==",
        "== 2ª execução do catálogo: o mesmo catálogo vem da memória ==",
    ]


def test_the_demo_needs_no_log_level_to_keep_its_output_short():
    assert "MEMORY_LOG_LEVEL" not in MAKEFILE.read_text(encoding="utf-8")
