"""Release 2, the expand side: add `text`; stop using `body` without dropping it.

Release 1's pods still write `body` while release 2's roll out, so `body` stays in the table, made
nullable for release 2's inserts, and leaves only Django's state. ledger_contract drops it later."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_seed")]
    operations = [
        migrations.AddField("note", "text", models.TextField(null=True)),
        migrations.AlterField("note", "body", models.TextField(null=True)),
        migrations.SeparateDatabaseAndState(state_operations=[migrations.RemoveField("note", "body")]),
    ]
