"""The read and page floors (DESIGN.md "Floors"): selectors → forms/filters/tables/exports → views.

Read from the source (ast), so an arrow that climbs a floor fails here before it hides a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Above the selectors: what shows data (forms, filters, tables, exports, charts, links, template tags).
PRESENTATION = ("arbook.filters", "arbook.filters_customers", "arbook.forms", "arbook.tables",
                "arbook.exports.invoices", "arbook.exports.aging", "arbook.exports.customers",
                "arbook.exports.statements", "arbook.drilldown", "arbook.charts", "arbook.templatetags")
#: Entry points and routing: nothing below imports them.
ENTRY = ("arbook.views", "arbook.tasks", "arbook.admin", "arbook.urls", "arbook.management")
#: Heavy optional libraries that may load on first use, inside the function that needs them.
LAZY_OK = ("openpyxl",)


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files(*prefixes: str) -> list[Path]:
    files = sorted((ROOT / "arbook").rglob("*.py"))
    return [p for p in files if "migrations" not in p.parts and _module(p).startswith(prefixes)]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, inside a function body?) for every import of `path`."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                out.extend((f"{child.module}.{a.name}", in_function) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return out


def _reaches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", _files("arbook.selectors"), ids=_module)
def test_selectors_import_nothing_above_them(path):
    climbing = [n for n, _ in _imports(path) if _reaches(n, PRESENTATION + ENTRY)]
    assert not climbing, f"{_module(path)} imports {climbing}"


@pytest.mark.parametrize("path", _files(*PRESENTATION), ids=_module)
def test_presentation_imports_no_entry_point(path):
    climbing = [n for n, _ in _imports(path) if _reaches(n, ENTRY)]
    assert not climbing, f"{_module(path)} imports {climbing}"


@pytest.mark.parametrize("path", _files("arbook.selectors", "arbook.views", "arbook.exports", "arbook.filters",
                                        "arbook.tables", "arbook.drilldown", "arbook.charts", "arbook.forms.aging",
                                        "arbook.forms.syncs", "arbook.forms.espay", "arbook.forms.customers",
                                        "arbook.templatetags"), ids=_module)
def test_no_import_hides_in_a_function_body(path):
    hidden = [n for n, inside in _imports(path) if inside and not _reaches(n, LAZY_OK)]
    assert not hidden, f"{_module(path)} imports {hidden} inside a function: import at module level"


@pytest.mark.parametrize("path", _files("arbook.views"), ids=_module)
def test_a_view_borrows_nothing_from_another_view(path):
    """Shared pieces of pages live below the views (`arbook.charts`, `arbook.drilldown`, ...);
    the one view helper all of them may use is the download response."""
    borrowed = [n for n, _ in _imports(path) if _reaches(n, ("arbook.views",)) and not _reaches(n, ("arbook.views.downloads",))]
    assert not borrowed, f"{_module(path)} imports {borrowed}"
