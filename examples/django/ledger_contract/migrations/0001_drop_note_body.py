"""Release 2, the contract side: drop `body` once no running pod uses it (only LOCKGATE_PHASE=contract
installs this app, so expand never runs it). Django's state lost the field in ledger 0003 already."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_note_text")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE ledger_note DROP COLUMN body",
            reverse_sql="ALTER TABLE ledger_note ADD COLUMN body text",
        )
    ]
