"""A migration that fails (LEDGER_BROKEN_MIGRATION=1): what a team sees when a data migration raises."""

from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("ledger_broken 0001: price list missing, cannot backfill notes")


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_note_text")]
    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]
