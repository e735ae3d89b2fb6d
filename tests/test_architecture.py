"""The layers of docs/architecture.md hold: each module imports only from its own package or
the packages below it, and nothing imports inside a function to get around that."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "memory"

# The rank of each part of memory/: a module may import from its own part or a lower rank.
# Parts of one rank (admin and api) never import each other.
RANKS = {
    "infra": 0,
    "providers": 1,
    "models": 2,
    "migrations": 2,
    "engine": 3,
    "io": 4,
    "services": 5,
    "admin": 6,
    "api": 6,
}
ENTRY_POINT_RANK = 7  # tasks, memory_utils, product_memory, apps, views, urls, commands...


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank_of(module: str) -> int:
    return RANKS.get(part_of(module), ENTRY_POINT_RANK)


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def memory_imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("memory"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            # "from memory.infra import redis" imports the module memory.infra.redis
            found.extend((n if (PACKAGE.parent / (n.replace(".", "/") + ".py")).exists() else node.module, node)
                         for n in names)
        elif isinstance(node, ast.Import):
            found.extend((alias.name, node) for alias in node.names if alias.name.startswith("memory"))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((f"<relative import, level {node.level}>", node))
    return found


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_imports_only_its_own_layer_and_the_ones_below(path):
    name = module_name(path)
    own_part, own_rank = part_of(name), rank_of(name)
    wrong = []
    for imported, node in memory_imports(ast.parse(path.read_text(), str(path))):
        if imported.startswith("<"):
            wrong.append(f"line {node.lineno}: {imported} (write memory.… imports)")
            continue
        other_part, other_rank = part_of(imported), rank_of(imported)
        if other_part == own_part or imported == "memory":
            continue
        if other_rank > own_rank or (other_rank == own_rank and own_rank != ENTRY_POINT_RANK):
            wrong.append(f"line {node.lineno}: {name} ({own_part or 'top'}) imports {imported} ({other_part})")
    assert wrong == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_import_of_the_memory_package_inside_a_function(path):
    """Imports at the top of the module: one inside a function hides a dependency (or a cycle).

    ``AppConfig.ready()`` is the exception Django documents: what it imports needs the app
    registry, which is not ready when ``memory/apps.py`` itself is imported."""
    tree = ast.parse(path.read_text(), str(path))
    hidden = []
    for function in ast.walk(tree):
        if module_name(path) == "memory.apps" and getattr(function, "name", "") == "ready":
            continue
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for imported, node in memory_imports(function):
                hidden.append(f"line {node.lineno}: {function.name}() imports {imported}")
    assert hidden == []
