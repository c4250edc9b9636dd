"""The due-date cover carries `changed_at`.

The aging drill-down as of a past date lists the invoices of one bucket's due dates whose state
then was the cell's row. Unchanged since (`changed_at` before the day), an invoice's state then
is its state now, so those not in that state now cannot match; with `changed_at` in this index
the list drops them index-only, before it sorts the bucket's matches by issue date and joins the
rest with their history (`arbook.selectors.aging._may_be_in`): at 10M invoices, 191,000 of the
bucket's 402,000 index entries go on to the sort instead of all of them.

PostgreSQL only (INCLUDE), built CONCURRENTLY before the old index goes.
"""
from django.db import migrations

COLUMNS = '"issued_at", "merchant_id", "id", "status", "outstanding", "paid_at", "first_seen_at"'


def _due(name: str, columns: str) -> str:
    return f'CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON arbook_invoice ("due_at") INCLUDE ({columns})'


def _run(schema_editor, *statements: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def forward(apps, schema_editor):
    _run(schema_editor, _due("inv_due_cover_v2", COLUMNS + ', "changed_at"'),
         "DROP INDEX CONCURRENTLY IF EXISTS inv_due_cover")


def backward(apps, schema_editor):
    _run(schema_editor, _due("inv_due_cover", COLUMNS), "DROP INDEX CONCURRENTLY IF EXISTS inv_due_cover_v2")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("arbook", "0024_receivable_issued")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
