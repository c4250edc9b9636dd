"""Chart geometry: the aging report's stacked bars as plain numbers for a server-side SVG
(no JavaScript, no CDN). Used by the aging report and the overview's small charts."""
from __future__ import annotations

from decimal import Decimal

from arbook.selectors.aging import ROW_LABELS, Bucket, Table
from arbook.status import APART, RECEIVABLE, STATUSES

CHART_ROWS = (*RECEIVABLE, *APART)


def bucket_chart(table: Table, buckets: list[Bucket], labels: list[str], *, width: int = 640,
                 height: int = 220) -> dict:
    """Stacked bars per bucket of the positive rows (credits are listed in the table, not drawn)."""
    by_row = {line.key: line for line in table.lines if line.kind == "row"}
    bars = []
    totals = []
    for i, _b in enumerate(buckets):
        segs = []
        for row in CHART_ROWS:
            line = by_row.get(row)
            if line and line.cells[i].amount > 0:
                segs.append((row, line.cells[i]))
        totals.append(sum((c.amount for _r, c in segs), Decimal("0")))
        bars.append(segs)
    top = max(totals) if totals and max(totals) > 0 else Decimal("1")
    pad_l, pad_b, pad_t = 10, 34, 18
    slot = (width - pad_l) / max(len(buckets), 1)
    bar_w = slot * 0.62
    plot_h = height - pad_b - pad_t
    out = []
    for i, segs in enumerate(bars):
        x = pad_l + i * slot + (slot - bar_w) / 2
        y = height - pad_b
        rects = []
        for row, cell in segs:
            h = float(cell.amount / top) * plot_h
            y -= h
            rects.append({"x": round(x, 1), "y": round(y, 1), "w": round(bar_w, 1), "h": round(max(h, 0.5), 1),
                          "colour": STATUSES[row].colour, "row": ROW_LABELS[row], "cell": cell})
        out.append({"rects": rects, "label": labels[i], "x": round(x + bar_w / 2, 1), "total": totals[i],
                    "label_y": height - pad_b + 16, "total_y": round(y - 4, 1)})
    return {"width": width, "height": height, "bars": out, "currency": table.currency,
            "legend": [(STATUSES[r].colour, ROW_LABELS[r]) for r in CHART_ROWS]}
