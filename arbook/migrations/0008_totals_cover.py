"""The covering index of the totals and the aging report also carries `issued_at` and `provider`.

The aging report on the issue basis reads the issue date of every receivable invoice, and the
report by gateway its provider; with both in `inv_totals_cover` these are index-only scans like
the due-date basis (they were scans of the table). PostgreSQL only (INCLUDE), built CONCURRENTLY under a new name before the old one goes,
so the totals never lose their index.
"""
from django.db import migrations

OLD, NEW = "inv_totals_cover", "inv_totals_cover_v2"
KEYS = '"status", "currency"'
OLD_INCLUDE = '"amount", "outstanding", "merchant_id", "due_at"'
NEW_INCLUDE = OLD_INCLUDE + ', "issued_at", "provider"'


def _swap(schema_editor, *, create: str, include: str, drop: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {create} ON arbook_invoice ({KEYS}) "
                       f"INCLUDE ({include})")
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {drop}")


def forward(apps, schema_editor):
    _swap(schema_editor, create=NEW, include=NEW_INCLUDE, drop=OLD)


def backward(apps, schema_editor):
    _swap(schema_editor, create=OLD, include=OLD_INCLUDE, drop=NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("arbook", "0007_event_prev_seen_at")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
