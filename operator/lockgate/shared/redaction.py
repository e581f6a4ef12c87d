"""Keeps database URLs and passwords out of every line lockgate prints or logs (pure)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

_secrets: set[str] = set()
# user:password@ in any URL-like text, whatever library produced it
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@")
_PASSWORD_PARAM = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")


def register(secret: str | None) -> None:
    """Remember a secret (a URL, a password) so that `redact` masks it wherever it appears."""
    if secret and len(secret) >= 3:
        _secrets.add(secret)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _PASSWORD_PARAM.sub(r"\1***", text)


class RedactingFilter:
    """A logging filter that redacts the fully formatted message of every record. Logging takes
    any object with this `filter` method; not subclassing logging.Filter keeps logging out of the
    CLI's start-up (`lockgate --version` prints through redact() too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
