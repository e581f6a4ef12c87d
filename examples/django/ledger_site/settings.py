"""The ledger example's settings: the database from LOCKGATE_DATABASE_URL, nothing written at runtime
(no static files, no sessions, no media), so a read-only root filesystem and a non-root user just work.

Which migrations `manage.py migrate` sees is chosen here, by app:
- `ledger`: the app's migrations, expand-safe (what every release's expand runs);
- `ledger_contract`: the contract side (drops what the running release no longer uses), installed only
  when LOCKGATE_PHASE is `contract`, which lockgate sets in the contract Job;
- `ledger_broken`: a migration that fails, for the docs' failure walk-through and the tests
  (LEDGER_BROKEN_MIGRATION=1).

LEDGER_RELEASE picks the code's release (release 1 writes a note's `body`, release 2 its `text`): one
image carries both so that the tests can walk 1 -> 2 as the shop does. Your releases are images.
"""

import os
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def database(url: str) -> dict[str, object]:
    """Django's DATABASES entry for a postgresql:// URL; query parameters (sslmode=...) become OPTIONS."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured("LOCKGATE_DATABASE_URL must be a postgresql:// URL")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "lockgate-example-not-secret")  # no sessions or signing here
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "ledger_site.urls"
WSGI_APPLICATION = "ledger_site.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MIDDLEWARE: list[str] = []

LEDGER_RELEASE = os.environ.get("LEDGER_RELEASE", "2")
if LEDGER_RELEASE not in ("1", "2"):
    raise ImproperlyConfigured("LEDGER_RELEASE must be 1 or 2")

INSTALLED_APPS = ["ledger"]
if os.environ.get("LOCKGATE_PHASE") == "contract":
    INSTALLED_APPS.append("ledger_contract")
if os.environ.get("LEDGER_BROKEN_MIGRATION") == "1":
    INSTALLED_APPS.append("ledger_broken")

DATABASES = {"default": database(os.environ.get("LOCKGATE_DATABASE_URL", ""))}
