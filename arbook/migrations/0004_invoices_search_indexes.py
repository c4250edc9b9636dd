"""Indexes for the invoice list at a million rows: sort columns and the search box.

- Sorting: B-tree indexes on `due_at`, `amount` and `outstanding` (issued, paid, number and
  customer already have one), so a keyset page ("rows after (value, id)") is an index range
  scan whatever the depth. Created on every database.
- Totals: a covering index for the per-currency totals (`inv_totals_cover`), see below.
- Search: the list's search box is a case-insensitive substring match, which Django compiles to
  `UPPER(col::text) LIKE UPPER('%text%')` on PostgreSQL. A GIN trigram index on exactly that
  expression (pg_trgm) answers it from the index instead of scanning the table; the four
  searched columns each get one, and PostgreSQL combines them (BitmapOr). PostgreSQL only:
  SQLite (the embedded default, small data) scans, which is fine there.

Built CONCURRENTLY on PostgreSQL (the migration is not atomic), so adding them to a live table
does not block the sync's writes. pg_trgm is a trusted extension (PostgreSQL 13+): a database
owner may create it without superuser rights.
"""
from django.db import migrations

#: name: (key columns, INCLUDE columns — PostgreSQL only)
SORT_INDEXES = {
    "inv_due_at_sort": (("due_at",), ()),
    "inv_amount_sort": (("amount",), ()),
    "inv_outstanding_sort": (("outstanding",), ()),
    # The list's totals per currency (count, amount, outstanding) read only this narrow index
    # (an index-only scan) instead of the wide rows: status leads for the status and overdue
    # filters; merchant and due date ride along for the scoping and the overdue test.
    "inv_totals_cover": (("status", "currency"), ("amount", "outstanding", "merchant_id", "due_at")),
}


def _columns(names) -> str:
    return ", ".join(f'"{n}"' for n in names)
TRIGRAM_INDEXES = {
    "inv_number_trgm": "number",
    "inv_customer_name_trgm": "customer_name",
    "inv_customer_email_trgm": "customer_email",
    "inv_external_id_trgm": "external_id",
}


def create(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if pg else ""
    with schema_editor.connection.cursor() as cursor:
        for name, (keys, include) in SORT_INDEXES.items():
            extra = f" INCLUDE ({_columns(include)})" if include and pg else ""
            cursor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON arbook_invoice ({_columns(keys)}){extra}")
        if not pg:
            return
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, column in TRIGRAM_INDEXES.items():
            cursor.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON arbook_invoice '
                           f'USING gin (UPPER("{column}"::text) gin_trgm_ops)')


def drop(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cursor:
        for name in [*SORT_INDEXES, *(TRIGRAM_INDEXES if pg else ())]:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("arbook", "0003_espay_batches")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
