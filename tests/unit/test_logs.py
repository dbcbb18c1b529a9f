"""Log formatters: fields from `extra`, JSON or key=value, secrets redacted whoever logs them."""

from __future__ import annotations

import json
import logging

from pgactivity.logs import JsonFormatter, TextFormatter, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJvcmdfaWQiOiJvcmctMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("pgactivity.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_has_the_extra_fields() -> None:
    line = JsonFormatter().format(record("stream %s", "opened", organization_id="org-1", resume=False))
    entry = json.loads(line)
    assert entry["message"] == "stream opened"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "pgactivity.test"
    assert entry["organization_id"] == "org-1"
    assert entry["resume"] is False
    assert entry["time"].endswith("Z")


def test_text_is_key_value() -> None:
    line = TextFormatter().format(record("stream closed", organization_id="org 1", reason="client"))
    assert line.split(" ", 1)[1] == 'INFO pgactivity.test: stream closed organization_id="org 1" reason=client'


def test_secrets_are_redacted_in_both_formats() -> None:
    for formatter in (JsonFormatter(), TextFormatter()):
        text = formatter.format(
            record("GET /api/activity/stream?access_token=%s failed", "opaque-token", url=f"x?access_token={JWT}")
        )
        assert "opaque-token" not in text
        assert JWT not in text
        assert "access_token=[redacted]" in text
    assert redact(f"Authorization: Bearer {JWT}") == "Authorization: Bearer [redacted]"
    assert redact(f"token {JWT} here") == "token [redacted] here"
    assert redact("nothing secret") == "nothing secret"
