"""Link each invoice event to the previous one (`prev_seen_at`), for as-of aging in one join.

The backfill is one window-function UPDATE (PostgreSQL, and SQLite >= 3.33).
"""

from django.db import migrations, models

BACKFILL = """
UPDATE arbook_invoiceevent SET prev_seen_at = linked.prev
FROM (SELECT id, LAG(seen_at) OVER (PARTITION BY invoice_id ORDER BY seen_at, id) AS prev
      FROM arbook_invoiceevent) AS linked
WHERE arbook_invoiceevent.id = linked.id AND linked.prev IS NOT NULL
"""


class Migration(migrations.Migration):

    dependencies = [
        ('arbook', '0006_fewer_invoice_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='invoiceevent',
            name='prev_seen_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
