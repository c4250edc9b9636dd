"""Covering indexes for as-of aging: the totals index also carries `first_seen_at` and
`changed_at`, and a partial one on `changed_at` carries what the report reads of a changed invoice.

As of a past date the report splits the invoices at the cutoff: those unchanged since are summed
in their current state from `inv_totals_cover_v3` (an index-only scan, like today's report), the
few changed since are found by a range of `inv_changed_cover` (index-only too) and joined with
their first event after the cutoff. PostgreSQL only (INCLUDE), built CONCURRENTLY before the old
index goes, so the totals never lose theirs.
"""
from django.db import migrations

KEYS = '"status", "currency"'
V2_INCLUDE = '"amount", "outstanding", "merchant_id", "due_at", "issued_at", "provider"'
V3_INCLUDE = V2_INCLUDE + ', "first_seen_at", "changed_at"'
CHANGED = ('CREATE INDEX CONCURRENTLY IF NOT EXISTS inv_changed_cover ON arbook_invoice ("changed_at") '
           'INCLUDE ("status", "currency", "amount", "outstanding", "paid_amount", "merchant_id", "due_at", '
           '"issued_at", "first_seen_at", "paid_at", "provider", "id") WHERE "changed_at" IS NOT NULL')


def _run(schema_editor, *statements: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def forward(apps, schema_editor):
    _run(schema_editor,
         f"CREATE INDEX CONCURRENTLY IF NOT EXISTS inv_totals_cover_v3 ON arbook_invoice ({KEYS}) INCLUDE ({V3_INCLUDE})",
         CHANGED,
         "DROP INDEX CONCURRENTLY IF EXISTS inv_totals_cover_v2")


def backward(apps, schema_editor):
    _run(schema_editor,
         f"CREATE INDEX CONCURRENTLY IF NOT EXISTS inv_totals_cover_v2 ON arbook_invoice ({KEYS}) INCLUDE ({V2_INCLUDE})",
         "DROP INDEX CONCURRENTLY IF EXISTS inv_changed_cover",
         "DROP INDEX CONCURRENTLY IF EXISTS inv_totals_cover_v3")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("arbook", "0009_invoice_changed_at")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
