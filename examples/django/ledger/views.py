from django.db import connection
from django.http import HttpRequest, JsonResponse

from ledger.models import NOTE_FIELD, Note, Seed


def index(request: HttpRequest) -> JsonResponse:
    """Writes a note and counts: every request touches the column this release writes."""
    note = Note.objects.create(**{NOTE_FIELD: request.GET.get("text", "hello")})
    return JsonResponse({"note": note.pk, "notes": Note.objects.count(), "seeds": Seed.objects.count()})


def healthz(request: HttpRequest) -> JsonResponse:
    """The database answers. Whether the schema fits this code is the readiness gate's call."""
    connection.ensure_connection()
    return JsonResponse({"ok": True})
