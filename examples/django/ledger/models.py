from django.conf import settings
from django.db import models


class Seed(models.Model):
    """One row per run of the data migration 0002: a second row means it ran twice."""

    pid = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)


# Release 1 writes `body`. Release 2 writes `text`; `body` stays in the table until the contract drops
# it (0003 takes it out of Django's state only, and makes it nullable so release 2's inserts work).
NOTE_FIELD = "body" if settings.LEDGER_RELEASE == "1" else "text"


class Note(models.Model):
    if NOTE_FIELD == "body":
        body = models.TextField()
    else:
        text = models.TextField(null=True)
