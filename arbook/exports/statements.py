"""A statement of account as a document: a PDF (ReportLab, no system libraries needed) and the rows
of its CSV/XLSX export. The figures come from `arbook.selectors.statements`; this module only lays
them out, with money formatted as everywhere else (`format_money`: Babel/CLDR with arbook's rules).
"""
from __future__ import annotations

import datetime as dt
import io
import zoneinfo
from collections.abc import Iterator

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from xml.sax.saxutils import escape

from arbook.selectors.statements import Statement, customer_statement
from arbook.templatetags.money import format_money

HEADER = ["Section", "Currency", "Invoice", "Gateway", "Issued", "Due", "Days overdue", "Age", "Amount",
          "How to pay"]

_GRID = TableStyle([
    ("FONTSIZE", (0, 0), (-1, -1), 8),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f5")),
    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.HexColor("#8a94a6")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("ALIGN", (-1, 0), (-1, -1), "RIGHT"),
])


def _d(day) -> str:
    return day.isoformat() if day else ""


def statement_rows(statement: Statement) -> Iterator[list]:
    """One row per open invoice, per bucket total and per payment (the CSV/XLSX export)."""
    for s in statement.sections:
        for line in s.lines:
            yield ["Open", s.currency, line.number, line.provider, _d(line.issued), _d(line.due), line.days_overdue,
                   line.bucket, line.outstanding, " · ".join(line.pay)]
        for label, amount in s.buckets:
            yield ["Age total", s.currency, "", "", "", "", "", label, amount, ""]
        yield ["Total owed", s.currency, "", "", "", "", "", "", s.total, ""]
        for p in s.payments:
            yield ["Payment", s.currency, p.number, p.provider, _d(p.day), "", "", "", p.amount, ""]
        yield ["Total paid", s.currency, "", "", _d(statement.start), _d(statement.end), "", "", s.paid, ""]


def statement_pdf(statement: Statement) -> bytes:
    """The statement as an A4 PDF: contacts, then per currency the age totals, the open invoices with
    how to pay each, and the payments received in the period."""
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    out = io.BytesIO()
    customer = statement.customer
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=14 * mm, rightMargin=14 * mm, topMargin=14 * mm,
                            bottomMargin=14 * mm, title=f"Statement of account - {customer}",
                            author=statement.merchant_name)
    story = [
        Paragraph(f"Statement of account — {escape(str(customer))}", styles["Title"]),
        Paragraph(escape(f"{statement.merchant_name} · as of {statement.as_of.isoformat()} · payments "
                         f"{statement.start.isoformat()} to {statement.end.isoformat()} ({statement.tz})"),
                  styles["BodyText"]),
    ]
    if statement.contacts:
        story.append(Paragraph(escape(" · ".join(shown for _kind, shown in statement.contacts)), small))
    if not statement.sections:
        story.append(Paragraph("Nothing is owed and nothing was paid in the period.", styles["BodyText"]))
    for s in statement.sections:
        story += [Spacer(1, 6 * mm), Paragraph(f"{escape(s.currency)}: {escape(format_money(s.total, s.currency))} "
                                               "owed", styles["Heading2"])]
        ages = Table([[label for label, _a in s.buckets] + ["Total"],
                      [format_money(a, s.currency) for _l, a in s.buckets] + [format_money(s.total, s.currency)]])
        ages.setStyle(_GRID)
        story.append(ages)
        if s.lines:
            story += [Spacer(1, 4 * mm), Paragraph("Open invoices", styles["Heading3"])]
            rows = [["Invoice", "Gateway", "Issued", "Due", "Days overdue", "How to pay", "Outstanding"]]
            rows += [[Paragraph(escape(line.number), small), line.provider, _d(line.issued), _d(line.due),
                      str(line.days_overdue), Paragraph("<br/>".join(escape(w) for w in line.pay), small),
                      format_money(line.outstanding, s.currency)] for line in s.lines]
            table = LongTable(rows, repeatRows=1, colWidths=[32 * mm, 20 * mm, 18 * mm, 18 * mm, 16 * mm, 54 * mm,
                                                            24 * mm])
            table.setStyle(_GRID)
            story.append(table)
        story += [Spacer(1, 4 * mm), Paragraph(f"Payments received: {escape(format_money(s.paid, s.currency))}",
                                               styles["Heading3"])]
        if s.payments:
            rows = [["Date", "Invoice", "Gateway", "Amount"]]
            rows += [[_d(p.day), Paragraph(escape(p.number), small), p.provider, format_money(p.amount, s.currency)]
                     for p in s.payments]
            table = LongTable(rows, repeatRows=1)
            table.setStyle(_GRID)
            story.append(table)
    if statement.truncated:
        story.append(Paragraph("Only the first invoices are listed; the totals cover all of them.", small))
    doc.build(story)
    return out.getvalue()


def statement_attachment(customer, day: dt.date) -> tuple[str, bytes]:
    """A reminder's attached statement: as of `day`, payments of the 30 days before (as the
    statement link's defaults), as (file name, PDF bytes)."""
    zone = zoneinfo.ZoneInfo(customer.merchant.timezone or "Asia/Jakarta")
    statement = customer_statement(customer=customer, as_of=day, start=day - dt.timedelta(days=30), end=day, tz=zone)
    return f"statement-{day.isoformat()}.pdf", statement_pdf(statement)
