"""The layout's rules, checked on the source: no import circles, no I/O in the
functional core, and no module that knows both serial bytes and HTTP.

Imports are read with ``ast`` (nothing is imported), so a test fails on the line
that breaks a rule, whether it is at the top of a module or inside a function.
Imports under ``if TYPE_CHECKING:`` are types only and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pos_plugin", "drivers")

# What the functional core may import: pure standard modules, pydantic, and itself.
RULES_MAY_IMPORT = frozenset(
    {
        "__future__",
        "collections",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "functools",
        "hashlib",
        "hmac",
        "itertools",
        "math",
        "operator",
        "re",
        "string",
        "typing",
        "typing_extensions",
        "unicodedata",
        "pydantic",
        "pos_plugin.models",
        "pos_plugin.money",
        "pos_plugin.rules",
    }
)
SERIAL = ("serial", "drivers.transport", "drivers.codec", "drivers.link")
HTTP = ("requests", "urllib3", "http", "fastapi", "starlette", "uvicorn", "httpx")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_names() -> frozenset[str]:
    return frozenset(modules())


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, name: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in the file, types-only ones left out.

    ``from pkg import module`` counts as importing ``pkg.module`` alone: Python needs
    the package's ``__init__`` started, not finished, so it is no circle through it.
    """
    known = _module_names()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            if len(subs) < len(node.names):  # names defined in base itself
                yield base, node.lineno
            for sub in subs:
                yield sub, node.lineno


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's import counts as its __init__)."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for target, _ in imports_of(path, name):
            if target in mods and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _under(target: str, prefixes: tuple[str, ...] | frozenset[str]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_functional_core_imports_no_io() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for name, path in modules().items()
        if _under(name, ("pos_plugin.rules",))
        for target, line in imports_of(path, name)
        if not _under(target, RULES_MAY_IMPORT)
    ]
    assert offences == []


def test_the_core_check_would_catch_io() -> None:
    tree_file = ROOT / "pos_plugin" / "rules" / "cascade.py"
    found = list(imports_of(tree_file, "pos_plugin.rules.cascade"))
    assert found, "the scan reads the core's imports"
    assert not _under("sqlite3", RULES_MAY_IMPORT)
    assert not _under("pos_plugin.journal.journal", RULES_MAY_IMPORT)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_knows_both_serial_bytes_and_http(name: str) -> None:
    targets = {t for t, _ in imports_of(modules()[name], name)}
    serial = sorted(t for t in targets if _under(t, SERIAL))
    http = sorted(t for t in targets if _under(t, HTTP))
    assert not (serial and http), f"{name} imports serial ({serial}) and HTTP ({http})"


def test_each_package_says_what_lives_there() -> None:
    bare = [
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("__init__.py")
        if p.parent.name != "data" and ast.get_docstring(ast.parse(p.read_text("utf-8"))) is None
    ]
    assert bare == []


def test_the_catalogue_command_does_not_start_the_agent_module() -> None:
    """``pos-plugin catalogue`` builds the shared catalogue from ``pos_plugin.catalogues``
    (where both the journal and the ledger may be named), not from ``agent``: a manager's
    command loads no web server, sale service or reconciliation to read a table."""
    name = "pos_plugin.catalogue_cli"
    targets = {t for t, _ in imports_of(modules()[name], name)}
    assert not _under("pos_plugin.agent", frozenset(targets)), sorted(targets)
    assert "pos_plugin.catalogues" in targets
