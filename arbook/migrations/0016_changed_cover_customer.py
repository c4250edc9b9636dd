"""The changed-since cover carries the customer id.

Aging by customer as of a past date ranks customers by their stored balance plus what their
invoices changed since then owed then (`arbook.selectors.aging._ranked_customers`); that second
part groups the changed invoices by customer, which with the customer in the partial
`inv_changed_cover` is an index-only scan joined with the events, as the report's own changed part
is (it read 20k table pages at a million invoices before).

PostgreSQL only (INCLUDE), built CONCURRENTLY before the old index goes.
"""
from django.db import migrations

COLUMNS = ('"status", "currency", "amount", "outstanding", "paid_amount", "merchant_id", "due_at", "issued_at", '
           '"first_seen_at", "paid_at", "provider", "id"')


def _changed(name: str, columns: str) -> str:
    return (f'CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON arbook_invoice ("changed_at") '
            f'INCLUDE ({columns}) WHERE "changed_at" IS NOT NULL')


def _run(schema_editor, *statements: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def forward(apps, schema_editor):
    _run(schema_editor, _changed("inv_changed_cover_v2", COLUMNS + ', "customer_id"'),
         "DROP INDEX CONCURRENTLY IF EXISTS inv_changed_cover")


def backward(apps, schema_editor):
    _run(schema_editor, _changed("inv_changed_cover", COLUMNS), "DROP INDEX CONCURRENTLY IF EXISTS inv_changed_cover_v2")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("arbook", "0015_customer_speed")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
