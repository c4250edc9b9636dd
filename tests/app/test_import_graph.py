"""The floors of DESIGN.md, read from the source (ast) of `arbook/` and `gateways/`:

- no import circle anywhere (strongly connected components of the module graph);
- `gateways/` imports neither Django nor `arbook`;
- no import hides inside a function body (where it would dodge a circle) but a heavy optional
  library loaded on first use on purpose (openpyxl);
- services never import a task (they enqueue by name, `arbook.celery.enqueue`);
- selectors import nothing above them (forms, filters, tables, exports, charts, links, template
  tags, entry points); those import no entry point; a view borrows only the download helper.
A climbing arrow fails here before it can hide a circle.
"""
from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("arbook", "gateways")
#: Above the selectors: what shows data.
PRESENTATION = ("arbook.filters", "arbook.filters_customers", "arbook.forms", "arbook.tables", "arbook.exports",
                "arbook.drilldown", "arbook.charts", "arbook.templatetags")
#: Entry points and routing: nothing below imports them.
ENTRY = ("arbook.views", "arbook.tasks", "arbook.admin", "arbook.urls", "arbook.management")
#: Heavy optional libraries that may load on first use, inside the function that needs them.
LAZY_OK = ("openpyxl",)


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
            if "migrations" not in p.parts}


@cache
def imports(name: str) -> tuple[tuple[str, bool], ...]:
    """(module or module.attribute imported, inside a function body?) of one module, relative
    imports resolved."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((a.name, inside) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([child.module] if child.module else []))
                out.append((base, inside))
                out.extend((f"{base}.{a.name}", inside) for a in child.names)
            visit(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return tuple(out)


def _reaches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _edges() -> dict[str, set[str]]:
    """Module -> the project modules it imports (an attribute import counts as its module)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name in known:
        targets = set()
        for imported, _inside in imports(name):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            strong(v)
    return found


def test_the_import_graph_has_no_circle():
    assert circles(_edges()) == []


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", [m for m in modules() if m.startswith("gateways")])
def test_gateways_import_neither_django_nor_arbook(name):
    wrong = [n for n, _ in imports(name) if _reaches(n, ("django", "arbook"))]
    assert not wrong, f"{name} imports {wrong}"


@pytest.mark.parametrize("name", list(modules()))
def test_no_import_hides_in_a_function_body(name):
    hidden = [n for n, inside in imports(name) if inside and not _reaches(n, LAZY_OK)]
    assert not hidden, f"{name} imports {hidden} inside a function: import at module level"


@pytest.mark.parametrize("name", [m for m in modules() if m.startswith("arbook.services")])
def test_services_enqueue_tasks_by_name_never_import_them(name):
    wrong = [n for n, _ in imports(name) if _reaches(n, ENTRY)]
    assert not wrong, f"{name} imports {wrong}"


@pytest.mark.parametrize("name", [m for m in modules() if m.startswith("arbook.selectors")])
def test_selectors_import_nothing_above_them(name):
    climbing = [n for n, _ in imports(name) if _reaches(n, PRESENTATION + ENTRY)]
    assert not climbing, f"{name} imports {climbing}"


@pytest.mark.parametrize("name", [m for m in modules() if _reaches(m, PRESENTATION)])
def test_presentation_imports_no_entry_point(name):
    climbing = [n for n, _ in imports(name) if _reaches(n, ENTRY)]
    assert not climbing, f"{name} imports {climbing}"


@pytest.mark.parametrize("name", [m for m in modules() if m.startswith("arbook.views")])
def test_a_view_borrows_nothing_from_another_view(name):
    """Shared pieces of pages live below the views (`arbook.charts`, `arbook.drilldown`, ...);
    the one view helper all of them may use is the download response."""
    borrowed = [n for n, _ in imports(name)
                if _reaches(n, ("arbook.views",)) and not _reaches(n, ("arbook.views.downloads", name))]
    assert not borrowed, f"{name} imports {borrowed}"
