"""The aging report's export: one line per table line, amounts per bucket and total, then the count."""
from __future__ import annotations

from arbook.selectors.aging import AgingReport


def export_rows(report: AgingReport) -> tuple[list[str], list[list]]:
    """(header, rows) of `report`, as the page shows its tables."""
    header = ["Currency", "Group" if report.group else "Row", *report.bucket_labels, "Total", "Invoices",
              "As of", "Basis"]
    rows = []
    for table in report.tables:
        for line in table.lines:
            rows.append([table.currency, line.label, *[c.amount for c in line.cells], line.total.amount,
                         line.total.count, report.as_of, report.basis])
    return header, rows


def export_stem(report: AgingReport) -> str:
    """The file's name without extension: `aging-<as of>-<basis>[-<group>]`."""
    return f"aging-{report.as_of.isoformat()}-{report.basis}{'-' + report.group if report.group else ''}"
