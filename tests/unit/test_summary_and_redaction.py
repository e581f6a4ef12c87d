"""The compact termination-message summary, and secrets kept out of output (pure)."""

from __future__ import annotations

import json
import logging

from lockgate.runner.summary import MigrationError, Summary
from lockgate.shared import redaction
from lockgate.shared.errors import MigrationFailed


def test_compact_summary_fits_a_termination_message_keeping_the_newest() -> None:
    summary = Summary("migrate", "expand", "1000")
    summary.applied = [{"version": str(i), "script": f"V{i}__x.sql", "ms": i} for i in range(1, 1001)]
    summary.fail(
        MigrationFailed(
            "boom " * 1000, MigrationError("1001", "V1001__x.sql", "42P01", "relation does not exist " * 200, 7)
        )
    )
    text = summary.compact()
    doc = json.loads(text)
    assert len(text.encode()) < 4096
    assert doc["applied_count"] == 1000 and doc["applied"][-1] == ["1000", 1000]
    assert doc["error"]["sqlstate"] == "42P01" and doc["error"]["line"] == 7 and len(doc["error"]["message"]) <= 1000
    assert doc["exit_code"] == 1


def test_redaction_masks_registered_secrets_and_any_url_password() -> None:
    redaction.register("postgresql://app:hunter2@db:5432/app")
    assert "hunter2" not in redaction.redact("failed for postgresql://app:hunter2@db:5432/app")
    assert redaction.redact("see mysql://u:pw123@h/x") == "see mysql://u:***@h/x"
    assert redaction.redact("host=db password='x y' user=u") == "host=db password=*** user=u"


def test_logging_filter_redacts_formatted_records() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "connecting to %s", ("postgresql://a:s3cr3t-pw@h/d",), None
    )
    redaction.RedactingFilter().filter(record)
    assert "s3cr3t-pw" not in record.getMessage()
