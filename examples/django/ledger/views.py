from django.db import connection
from django.http import HttpRequest, JsonResponse

from ledger.models import Note, Seed


def index(request: HttpRequest) -> JsonResponse:
    """Writes a note and counts: every request touches release 2's column."""
    note = Note.objects.create(text=request.GET.get("text", "hello"))
    return JsonResponse({"note": note.pk, "notes": Note.objects.count(), "seeds": Seed.objects.count()})


def healthz(request: HttpRequest) -> JsonResponse:
    """The database answers. Whether the schema fits this code is the readiness gate's call."""
    connection.ensure_connection()
    return JsonResponse({"ok": True})
