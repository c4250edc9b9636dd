"""The issue-date and paid-date indexes carry what the overview sums and the list sorts by.

The overview's DSO sums 90 days of sales by issue date and its "collected" 30 days of payments
by paid date; both read every matching row from the table (19-23k pages at a million invoices,
~300 ms together). With the summed columns included they are index-only scans. The paid-date
index also carries `issued_at` and the id, so a list filtered by paid date and sorted by issue
date chooses its page from the index. On PostgreSQL built CONCURRENTLY before the old ones go.
"""
from django.db import migrations, models
from django.db.models import Q

OLD = [models.Index(fields=["issued_at"], name="inv_issued"),
       models.Index(fields=["paid_at"], name="inv_paid", condition=Q(paid_at__isnull=False))]
NEW = [models.Index(fields=["issued_at"], include=["status", "merchant", "currency", "amount", "outstanding",
                                                   "paid_amount"], name="inv_issued_cover"),
       models.Index(fields=["paid_at"], include=["status", "merchant", "currency", "amount", "paid_amount",
                                                 "issued_at", "id"], name="inv_paid_cover",
                    condition=Q(paid_at__isnull=False))]


def _swap(apps, schema_editor, create, drop):
    invoice = apps.get_model("arbook", "Invoice")
    options = {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}
    for index in create:
        schema_editor.add_index(invoice, index, **options)
    for index in drop:
        schema_editor.remove_index(invoice, index, **options)


def forward(apps, schema_editor):
    _swap(apps, schema_editor, NEW, OLD)


def backward(apps, schema_editor):
    _swap(apps, schema_editor, OLD, NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("arbook", "0010_changed_cover")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
            state_operations=[
                *[migrations.RemoveIndex(model_name="invoice", name=index.name) for index in OLD],
                *[migrations.AddIndex(model_name="invoice", index=index) for index in NEW],
            ],
        ),
    ]
