"""`Invoice.last_event_at` (its latest event) and `changed_at` (the latest of that and `paid_at`).

An invoice whose `changed_at` is before an as-of date stood then as it stands now, so as-of aging
sums those from a covering index and joins the history only for the rest (see 0010). The backfill
runs before `changed_at` is added, so the rewrite that adds the generated column computes it from
the filled values.
"""
import django.db.models.functions.comparison
from django.db import migrations, models

BACKFILL = """
UPDATE arbook_invoice SET last_event_at = (
    SELECT MAX(e.seen_at) FROM arbook_invoiceevent e WHERE e.invoice_id = arbook_invoice.id)
WHERE EXISTS (SELECT 1 FROM arbook_invoiceevent e WHERE e.invoice_id = arbook_invoice.id)
"""


class Migration(migrations.Migration):

    dependencies = [
        ('arbook', '0008_totals_cover'),
    ]

    operations = [
        migrations.AddField(
            model_name='invoice',
            name='last_event_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop, elidable=False),
        migrations.AddField(
            model_name='invoice',
            name='changed_at',
            field=models.GeneratedField(db_persist=True, expression=django.db.models.functions.comparison.Greatest(django.db.models.functions.comparison.Coalesce('last_event_at', 'paid_at'), django.db.models.functions.comparison.Coalesce('paid_at', 'last_event_at')), output_field=models.DateTimeField(blank=True, null=True)),
        ),
    ]
