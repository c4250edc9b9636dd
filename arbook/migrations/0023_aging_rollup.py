"""The aging rollup (`arbook.models.AgingRollup`), the overview's day rollup (`DayRollup`) and
the PostgreSQL triggers that keep both.

The SQL is written out here, frozen with the migration: `arbook_aging_rollup_rebuild(merchant)`
and `arbook_day_rollup_rebuild(merchant)` recount one merchant's rows (NULL: all) from the
invoices; `manage.py rebuild_aging_rollup` calls them (with `arbook_server_zone()` re-created)
when the server's TIME_ZONE changes, or checks them. On SQLite nothing is installed: the report scans, as before.
"""
from django.conf import settings
from django.db import migrations, models

#: The states whose invoices age now; `paid` ones age only as an unapplied credit.
AGING = "('open', 'partially_paid', 'processing', 'failed', 'charged_back', 'expired', 'unknown')"
KEY = ("zone, merchant_id, credential_id, provider, currency, status, credit, due_day, issued_day, exist_day, "
       "changed_day")
COLUMNS = "merchant_id, credential_id, provider, currency, status, outstanding, due_at, issued_at, first_seen_at, changed_at"


def _rows(sign: int, relation: str, where: str = "TRUE") -> str:
    return (f"SELECT {sign} AS s, {COLUMNS} FROM {relation} "
            f"WHERE ({where}) AND (status IN {AGING} OR (status = 'paid' AND outstanding < 0))")


def _delta(changes: str) -> str:
    """The grouped rollup rows of `changes` (signed invoice rows), zero sums left out."""
    return f"""
        WITH changes AS ({changes}),
        zones AS (
            SELECT m.id AS merchant_id, z.zone
            FROM arbook_merchant m
            CROSS JOIN LATERAL (SELECT DISTINCT unnest(ARRAY[m.timezone, arbook_server_zone()]) AS zone) z
            WHERE m.id IN (SELECT merchant_id FROM changes) AND arbook_zone_ok(z.zone)
        )
        SELECT z.zone, c.merchant_id, c.credential_id, c.provider, c.currency, c.status,
               COALESCE(c.outstanding < 0, FALSE) AS credit,
               COALESCE((c.due_at AT TIME ZONE z.zone)::date, DATE '9999-12-31') AS due_day,
               COALESCE((c.issued_at AT TIME ZONE z.zone)::date, DATE '9999-12-31') AS issued_day,
               (COALESCE(c.issued_at, c.first_seen_at) AT TIME ZONE z.zone)::date AS exist_day,
               COALESCE((c.changed_at AT TIME ZONE z.zone)::date, DATE '0001-01-01') AS changed_day,
               SUM(c.s * COALESCE(c.outstanding, 0)) AS amount, SUM(c.s) AS count
        FROM changes c JOIN zones z ON z.merchant_id = c.merchant_id
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
        HAVING SUM(c.s) <> 0 OR SUM(c.s * COALESCE(c.outstanding, 0)) <> 0"""


def _apply(changes: str) -> str:
    """Append the delta as new rows (`delta` true): no row is updated, so writers never wait for
    each other or deadlock here; `arbook_rollups_compact()` folds them into one row per key."""
    return f"""
        INSERT INTO arbook_agingrollup ({KEY}, amount, count, delta)
        SELECT *, TRUE FROM ({_delta(changes)}) d;"""


DAY_KEY = "merchant_id, credential_id, currency, kind, day"

#: Held (to the end of the transaction) by a compaction and a rebuild, never by a writer: a
#: compaction's re-inserted row is not in the snapshot of a rebuild running at the same time,
#: which would delete the rows around it and count its invoices twice.
FOLD_LOCK = "PERFORM pg_advisory_xact_lock(7206230023);"


def _day_rows(sign: int, relation: str, where: str = "TRUE") -> str:
    """Signed (merchant, currency, kind, UTC day, value) rows of the overview's two windows."""
    return f"""
        SELECT {sign} AS s, merchant_id, credential_id, currency, 'collected'::varchar AS kind,
               (paid_at AT TIME ZONE 'UTC')::date AS day, COALESCE(paid_amount, amount) AS value
        FROM {relation} WHERE ({where}) AND paid_at IS NOT NULL AND status <> 'charged_back'
        UNION ALL
        SELECT {sign}, merchant_id, credential_id, currency, 'sales', (issued_at AT TIME ZONE 'UTC')::date,
               COALESCE(amount, outstanding + paid_amount)
        FROM {relation} WHERE ({where}) AND issued_at IS NOT NULL AND status NOT IN ('draft', 'cancelled')"""


def _day_delta(changes: str) -> str:
    return f"""
        SELECT {DAY_KEY}, SUM(s * COALESCE(value, 0)) AS amount, SUM(s) AS count,
               SUM(CASE WHEN value IS NULL THEN 0 ELSE s END) AS known
        FROM ({changes}) c
        GROUP BY 1, 2, 3, 4, 5
        HAVING SUM(s) <> 0 OR SUM(s * COALESCE(value, 0)) <> 0 OR SUM(CASE WHEN value IS NULL THEN 0 ELSE s END) <> 0"""


def _day_apply(changes: str) -> str:
    return f"""
        INSERT INTO arbook_dayrollup ({DAY_KEY}, amount, count, known, delta)
        SELECT *, TRUE FROM ({_day_delta(changes)}) d;"""


def _compact(table: str, key: str, sums: str) -> str:
    """Fold the delta rows of `table` and the rows of the same keys into one row per key (none
    when it sums to nothing). Rows a writer has not committed yet are not seen, so they stay
    for the next run; two runs at once each fold only the rows they deleted."""
    total = ", ".join(f"SUM({c})" for c in sums.split(", "))
    nonzero = " OR ".join(f"SUM({c}) <> 0" for c in sums.split(", "))
    return f"""
        WITH keys AS (SELECT DISTINCT {key} FROM {table} WHERE delta),
        gone AS (DELETE FROM {table} t USING keys k WHERE ({", ".join(f"t.{c}" for c in key.split(", "))})
                 = ({", ".join(f"k.{c}" for c in key.split(", "))}) RETURNING t.*),
        merged AS (INSERT INTO {table} ({key}, {sums}, delta)
                   SELECT {key}, {total}, FALSE FROM gone GROUP BY {key} HAVING {nonzero}
                   RETURNING 1)
        SELECT (SELECT count(*) FROM gone) INTO folded;"""


FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION arbook_zone_ok(name text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- A zone PostgreSQL does not know gets no rows (the report then scans): never a failed write.
    PERFORM now() AT TIME ZONE name;
    RETURN TRUE;
EXCEPTION WHEN others THEN
    RETURN FALSE;
END $$;

CREATE OR REPLACE FUNCTION arbook_aging_rollup_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_apply(_rows(1, "new_rows"))}
        {_day_apply(_day_rows(1, "new_rows"))}
    ELSIF TG_OP = 'UPDATE' THEN
        {_apply(_rows(1, "new_rows") + " UNION ALL " + _rows(-1, "old_rows"))}
        {_day_apply(_day_rows(1, "new_rows") + " UNION ALL " + _day_rows(-1, "old_rows"))}
    ELSE
        {_apply(_rows(-1, "old_rows"))}
        {_day_apply(_day_rows(-1, "old_rows"))}
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION arbook_aging_rollup_rebuild(merchant bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Writers wait (and in-flight ones finish first): their triggers add to the recounted rows.
    LOCK TABLE arbook_invoice IN SHARE MODE;
    {FOLD_LOCK}
    DELETE FROM arbook_agingrollup WHERE merchant IS NULL OR merchant_id = merchant;
    INSERT INTO arbook_agingrollup ({KEY}, amount, count, delta)
    SELECT *, FALSE FROM ({_delta(_rows(1, "arbook_invoice", "merchant IS NULL OR merchant_id = merchant"))}) d;
END $$;

CREATE OR REPLACE FUNCTION arbook_day_rollup_rebuild(merchant bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE arbook_invoice IN SHARE MODE;
    {FOLD_LOCK}
    DELETE FROM arbook_dayrollup WHERE merchant IS NULL OR merchant_id = merchant;
    INSERT INTO arbook_dayrollup ({DAY_KEY}, amount, count, known, delta)
    SELECT *, FALSE FROM ({_day_delta(_day_rows(1, "arbook_invoice", "merchant IS NULL OR merchant_id = merchant"))}) d;
END $$;

CREATE OR REPLACE FUNCTION arbook_rollups_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
    total bigint := 0;
BEGIN
    {FOLD_LOCK}
    {_compact("arbook_agingrollup", KEY, "amount, count")}
    total := total + folded;
    {_compact("arbook_dayrollup", DAY_KEY, "amount, count, known")}
    RETURN total + folded;
END $$;

CREATE OR REPLACE FUNCTION arbook_merchant_zone_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM arbook_aging_rollup_rebuild(NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER arbook_aging_rollup_insert AFTER INSERT ON arbook_invoice
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION arbook_aging_rollup_changed();
CREATE TRIGGER arbook_aging_rollup_update AFTER UPDATE ON arbook_invoice
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION arbook_aging_rollup_changed();
CREATE TRIGGER arbook_aging_rollup_delete AFTER DELETE ON arbook_invoice
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION arbook_aging_rollup_changed();
CREATE TRIGGER arbook_merchant_zone_changed AFTER UPDATE OF timezone ON arbook_merchant
    FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone) EXECUTE FUNCTION arbook_merchant_zone_changed();
"""

DROP = """
DROP TRIGGER IF EXISTS arbook_aging_rollup_insert ON arbook_invoice;
DROP TRIGGER IF EXISTS arbook_aging_rollup_update ON arbook_invoice;
DROP TRIGGER IF EXISTS arbook_aging_rollup_delete ON arbook_invoice;
DROP TRIGGER IF EXISTS arbook_merchant_zone_changed ON arbook_merchant;
DROP FUNCTION IF EXISTS arbook_merchant_zone_changed();
DROP FUNCTION IF EXISTS arbook_aging_rollup_rebuild(bigint);
DROP FUNCTION IF EXISTS arbook_day_rollup_rebuild(bigint);
DROP FUNCTION IF EXISTS arbook_rollups_compact();
DROP FUNCTION IF EXISTS arbook_aging_rollup_changed();
DROP FUNCTION IF EXISTS arbook_zone_ok(text);
DROP FUNCTION IF EXISTS arbook_server_zone();
"""


def server_zone_sql(zone: str) -> str:
    """The server's TIME_ZONE as the triggers see it (the readers compare it with theirs)."""
    literal = zone.replace("'", "''")
    return f"CREATE OR REPLACE FUNCTION arbook_server_zone() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT '{literal}'::text $$;"


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(server_zone_sql(settings.TIME_ZONE))
    schema_editor.execute(FUNCTIONS)
    schema_editor.execute("SELECT arbook_aging_rollup_rebuild(NULL), arbook_day_rollup_rebuild(NULL)")


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ('arbook', '0022_worklist_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='AgingRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('zone', models.CharField(max_length=64)),
                ('merchant_id', models.BigIntegerField()),
                ('credential_id', models.BigIntegerField()),
                ('provider', models.CharField(max_length=16)),
                ('currency', models.CharField(max_length=3)),
                ('status', models.CharField(max_length=16)),
                ('credit', models.BooleanField()),
                ('due_day', models.DateField()),
                ('issued_day', models.DateField()),
                ('exist_day', models.DateField()),
                ('changed_day', models.DateField()),
                ('amount', models.DecimalField(decimal_places=2, max_digits=24)),
                ('count', models.BigIntegerField()),
                ('delta', models.BooleanField(default=False)),
            ],
            options={
                'indexes': [models.Index(fields=['zone', 'merchant_id', 'credential_id', 'provider', 'currency', 'status', 'credit', 'due_day', 'issued_day', 'exist_day', 'changed_day'], name='aging_rollup_key'), models.Index(condition=models.Q(('delta', True)), fields=['id'], name='aging_rollup_deltas')],
            },
        ),
        migrations.CreateModel(
            name='DayRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('merchant_id', models.BigIntegerField()),
                ('credential_id', models.BigIntegerField()),
                ('currency', models.CharField(max_length=3)),
                ('kind', models.CharField(choices=[('collected', 'Collected'), ('sales', 'Sales')], max_length=9)),
                ('day', models.DateField()),
                ('amount', models.DecimalField(decimal_places=2, max_digits=24)),
                ('count', models.BigIntegerField()),
                ('known', models.BigIntegerField()),
                ('delta', models.BooleanField(default=False)),
            ],
            options={
                'indexes': [models.Index(fields=['merchant_id', 'credential_id', 'currency', 'kind', 'day'], name='day_rollup_key'), models.Index(condition=models.Q(('delta', True)), fields=['id'], name='day_rollup_deltas')],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
