"""Keep the stock table vacuumed: claims flip rows out of the free-stock partial index all day,
and with PostgreSQL's default thresholds (20% of a large table) dead index entries pile up long
before autovacuum runs. No-op on SQLite (the demo)."""

from django.db import migrations

AGGRESSIVE = (
    "ALTER TABLE shop_cardkey SET (autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02, "
    "autovacuum_analyze_threshold = 1000)"
)
DEFAULT = (
    "ALTER TABLE shop_cardkey RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
    "autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
)


def _run(sql):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return apply


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [migrations.RunPython(_run(AGGRESSIVE), _run(DEFAULT))]
