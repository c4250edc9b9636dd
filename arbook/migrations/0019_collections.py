"""The collector's records (issue 17): notes and their revisions, hold reasons and holds, the
audit trail, and a collector per customer. Every existing merchant gets the default list of hold
reasons (new merchants get it when they are created: `arbook.apps`)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


DEFAULT_HOLD_REASONS = ("Amount disputed", "Goods or service not received", "Awaiting a credit note",
                        "Payment arrangement in negotiation", "Customer in administration", "Other")


def default_reasons(apps, schema_editor):
    Merchant, HoldReason = apps.get_model("arbook", "Merchant"), apps.get_model("arbook", "HoldReason")
    HoldReason.objects.bulk_create([HoldReason(merchant_id=pk, label=label) for pk in
                                    Merchant.objects.values_list("pk", flat=True) for label in DEFAULT_HOLD_REASONS],
                                   ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('arbook', '0018_customer_key_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(default=django.utils.timezone.now)),
                ('action', models.CharField(choices=[('note_added', 'Note added'), ('note_edited', 'Note edited'), ('hold_opened', 'Hold opened'), ('hold_released', 'Hold released'), ('collector_assigned', 'Collector assigned')], max_length=32)),
                ('target', models.CharField(max_length=64)),
                ('summary', models.CharField(max_length=255)),
                ('data', models.JSONField(blank=True, default=dict)),
            ],
            options={
                'verbose_name_plural': 'audit entries',
            },
        ),
        migrations.CreateModel(
            name='Hold',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('detail', models.TextField(blank=True)),
                ('opened_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('until', models.DateField(blank=True, null=True)),
                ('ends_at', models.DateTimeField(blank=True, null=True)),
                ('released_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='HoldReason',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('label', models.CharField(max_length=100)),
                ('is_active', models.BooleanField(default=True, help_text='Offered for new holds (existing ones keep it).')),
            ],
            options={
                'ordering': ['label'],
            },
        ),
        migrations.CreateModel(
            name='Note',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('text', models.TextField()),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('edited_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='NoteRevision',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('text', models.TextField()),
                ('written_at', models.DateTimeField()),
                ('replaced_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'ordering': ['-replaced_at', '-id'],
            },
        ),
        migrations.AddField(
            model_name='customer',
            name='collector',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(condition=models.Q(('collector__isnull', False)), fields=['collector', 'id'], name='customer_collector'),
        ),
        migrations.AddField(
            model_name='auditentry',
            name='customer',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='arbook.customer'),
        ),
        migrations.AddField(
            model_name='auditentry',
            name='invoice',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='arbook.invoice'),
        ),
        migrations.AddField(
            model_name='auditentry',
            name='merchant',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='arbook.merchant'),
        ),
        migrations.AddField(
            model_name='auditentry',
            name='user',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='hold',
            name='customer',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='holds', to='arbook.customer'),
        ),
        migrations.AddField(
            model_name='hold',
            name='invoice',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='holds', to='arbook.invoice'),
        ),
        migrations.AddField(
            model_name='hold',
            name='merchant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='arbook.merchant'),
        ),
        migrations.AddField(
            model_name='hold',
            name='opened_by',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='hold',
            name='released_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='holdreason',
            name='merchant',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='hold_reasons', to='arbook.merchant'),
        ),
        migrations.AddField(
            model_name='hold',
            name='reason',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='arbook.holdreason'),
        ),
        migrations.AddField(
            model_name='note',
            name='author',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='note',
            name='customer',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notes', to='arbook.customer'),
        ),
        migrations.AddField(
            model_name='note',
            name='invoice',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='notes', to='arbook.invoice'),
        ),
        migrations.AddField(
            model_name='note',
            name='merchant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='arbook.merchant'),
        ),
        migrations.AddField(
            model_name='noterevision',
            name='note',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='revisions', to='arbook.note'),
        ),
        migrations.AddIndex(
            model_name='auditentry',
            index=models.Index(fields=['merchant', '-at'], name='audit_merchant_recent'),
        ),
        migrations.AddIndex(
            model_name='auditentry',
            index=models.Index(condition=models.Q(('customer__isnull', False)), fields=['customer', '-at'], name='audit_customer_recent'),
        ),
        migrations.AddConstraint(
            model_name='holdreason',
            constraint=models.UniqueConstraint(fields=('merchant', 'label'), name='hold_reason_unique_label'),
        ),
        migrations.AddIndex(
            model_name='hold',
            index=models.Index(fields=['customer', '-opened_at'], name='hold_customer_recent'),
        ),
        migrations.AddIndex(
            model_name='hold',
            index=models.Index(condition=models.Q(('invoice__isnull', False)), fields=['invoice'], name='hold_invoice'),
        ),
        migrations.AddIndex(
            model_name='hold',
            index=models.Index(condition=models.Q(('released_at__isnull', True)), fields=['merchant', 'ends_at'], name='hold_open'),
        ),
        migrations.AddIndex(
            model_name='note',
            index=models.Index(fields=['customer', '-created_at', '-id'], name='note_customer_recent'),
        ),
        migrations.AddIndex(
            model_name='note',
            index=models.Index(condition=models.Q(('invoice__isnull', False)), fields=['invoice', '-created_at', '-id'], name='note_invoice_recent'),
        ),
        migrations.RunPython(default_reasons, migrations.RunPython.noop),
    ]
