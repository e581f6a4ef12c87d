"""Kubernetes timestamps: RFC 3339 text in UTC, whole seconds, a trailing Z (pure)."""

from __future__ import annotations

from datetime import datetime, timezone


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def iso(moment: datetime) -> str:
    """A Kubernetes timestamp: UTC, seconds, Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
