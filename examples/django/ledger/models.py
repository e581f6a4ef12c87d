from django.db import models


class Seed(models.Model):
    """One row per run of the data migration 0002: a second row means it ran twice."""

    pid = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)


class Note(models.Model):
    # Release 2 writes `text`. Release 1's `body` is still in the table until the contract drops it
    # (0003 takes it out of Django's state only, and makes it nullable so release 2's inserts work).
    text = models.TextField(null=True)
