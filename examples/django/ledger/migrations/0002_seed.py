"""A data migration that is not idempotent: each run inserts a row, so a second run shows.
It works a while first, as real data migrations do; that is what makes racing runs overlap."""

import os
import time

from django.db import migrations


def seed(apps, schema_editor):
    time.sleep(3)
    apps.get_model("ledger", "Seed").objects.create(pid=os.getpid())


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
