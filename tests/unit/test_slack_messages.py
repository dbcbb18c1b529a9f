"""What a Slack message says, and how Slack's answers are sorted into retry / give up / pause."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from pgactivity.slack import (
    ActivityView,
    SlackMisconfigured,
    SlackRejected,
    SlackUnavailable,
    SlackUnknownError,
    render,
    short_view,
    translate,
)


def activity(**changes: Any) -> ActivityView:
    data: dict[str, Any] = {
        "id": "3f0c0d1e-0000-4000-8000-000000000001",
        "organizationId": "org-123",
        "sessionId": "ses-456",
        "agentType": "executor",
        "agentName": "executor-high",
        "category": "ultrabrain",
        "status": "running",
        "progress": 30,
        "message": "Analyzing codebase...",
        "inputData": {"prompt": "Implement   feature\nX", "files": 3},
        "outputData": None,
        "error": None,
        "createdAt": "2026-01-30T12:00:00.000000Z",
        "completedAt": None,
    }
    data.update(changes)
    return ActivityView.from_json(data)


def test_running_message_shows_agent_category_session_progress_and_input() -> None:
    text = render(activity())
    assert text.splitlines()[0] == (
        ":hourglass_flowing_sand: *executor-high* (executor) · ultrabrain · running 30% — Analyzing codebase..."
    )
    assert "session `ses-456`" in text
    assert "> Implement feature X" in text


def test_completed_message_shows_duration_and_output() -> None:
    text = render(
        activity(status="completed", progress=100, completedAt="2026-01-30T12:02:05.500000Z", outputData={"ok": 1})
    )
    assert text.startswith(":white_check_mark: *executor-high* (executor) · ultrabrain · completed in 2m 06s")
    assert '→ {"ok":1}' in text


def test_failed_message_shows_duration_and_escaped_error() -> None:
    text = render(activity(status="failed", completedAt="2026-01-30T12:00:03.250000Z", error="<timeout> & gone"))
    assert text.splitlines()[0].endswith("failed after 3.2s: &lt;timeout&gt; &amp; gone")


def test_short_view_truncates_long_input() -> None:
    view = short_view({"data": "x" * 1000}, 50)
    assert view is not None
    assert len(view) == 50
    assert view.endswith("…")
    assert short_view({}, 50) is None


def api_error(status: int, error: str | None = None, headers: dict[str, str] | None = None) -> SlackApiError:
    data = {"ok": False, "error": error} if error else {}
    return SlackApiError("failed", SimpleNamespace(status_code=status, data=data, headers=headers or {}))


@pytest.mark.parametrize(
    ("status", "error", "kind", "maybe_posted"),
    [
        (429, "ratelimited", SlackUnavailable, False),
        (500, "internal_error", SlackUnavailable, True),
        (503, None, SlackUnavailable, True),
        (200, "invalid_auth", SlackMisconfigured, None),
        (200, "channel_not_found", SlackMisconfigured, None),
        (200, "msg_too_long", SlackRejected, None),
        (200, "message_not_found", SlackRejected, None),
        # The workspace cannot take messages now: pause and retry, never give up on the message.
        (200, "rate_limited", SlackUnavailable, False),
        (200, "accesslimited", SlackUnavailable, False),
        (200, "message_limit_exceeded", SlackUnavailable, False),
        (200, "service_unavailable", SlackUnavailable, False),
        (200, "fatal_error", SlackUnavailable, True),
        (200, "token_revoked", SlackMisconfigured, None),
        (200, "ekm_access_denied", SlackMisconfigured, None),
        # Codes nobody knows: bounded retries, not an immediate "rejected".
        (200, "a_code_slack_added_last_week", SlackUnknownError, None),
        (400, "invalid_arguments", SlackUnknownError, None),
    ],
)
def test_slack_errors_are_sorted(status: int, error: str | None, kind: type[Exception], maybe_posted: bool) -> None:
    translated = translate("chat.postMessage", api_error(status, error, {"Retry-After": "7"}), posting=True)
    assert type(translated) is kind
    if isinstance(translated, SlackUnavailable):
        assert translated.maybe_posted is maybe_posted
        if status == 429:
            assert translated.retry_after == 7


def test_error_text_in_reasons_is_a_code_never_free_text() -> None:
    weird = translate("chat.postMessage", api_error(200, "<b>db.internal:5432 user=app</b>"), posting=True)
    assert isinstance(weird, SlackUnknownError)
    assert weird.error == "unknown_error"
    limited = translate("chat.postMessage", api_error(200, "rate_limited"), posting=True)
    assert isinstance(limited, SlackUnavailable)
    assert limited.reason == "rate_limited"
    assert limited.retry_after is None
    for bad in ("nan", "inf", "-5", "999999999"):  # never a sleep of that long, or of NaN
        limited = translate("chat.postMessage", api_error(429, "ratelimited", {"Retry-After": bad}), posting=True)
        assert isinstance(limited, SlackUnavailable)
        assert limited.retry_after is None, bad


def test_a_message_of_deeply_nested_input_renders() -> None:
    from pgactivity import jsondepth

    deep = '{"id": "a", "organizationId": "o", "agentType": "x", "status": "running", "createdAt": '
    deep += '"2026-01-30T12:00:00.000000Z", "inputData": ' + "[" * 3000 + "]" * 3000 + "}"
    text = render(ActivityView.from_json(jsondepth.loads(deep)))
    assert "…" in text
