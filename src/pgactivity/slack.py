"""Slack messages for activities: the seam, the text, and the slack-sdk implementation.

`SlackActivityService` is the seam the consumer (slack_consumer.py) talks to; the
default is `SlackSdkService`, slack-sdk's `AsyncWebClient` with its rate-limit
retry handler (429 + Retry-After). Another implementation (a different chat
tool, a test double) only has to provide the same async methods and raise the
errors below, which tell the consumer what to do next:

- `SlackRejected`: this message can never be posted or updated (too long,
  deleted, ...); give up on it.
- `SlackMisconfigured`: nothing can be posted (bad token, unknown channel);
  pause everything, report it, check again later.
- `SlackUnavailable`: Slack or the workspace cannot take messages now
  (network, 5xx, timeout, rate limits: `ratelimited`, `rate_limited`,
  `accesslimited`); pause everything and try again later. `maybe_posted` says
  whether a chat.postMessage might have landed anyway.
- `SlackUnknownError`: an error code this module does not know; retry this
  message with backoff a bounded number of times, then give up on it.

Each error's `reason` is a short fixed text or Slack's error code, never an
exception's text: it is what /readyz shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from pgactivity.errors import PgActivityError

logger = logging.getLogger(__name__)

METADATA_EVENT_TYPE = "pgactivity_activity"
INPUT_VIEW_CHARS = 200
OUTPUT_VIEW_CHARS = 200
ERROR_VIEW_CHARS = 500

# Slack's error codes by what they mean for us (https://docs.slack.dev/reference/methods/chat.postMessage,
# .../chat.update). Any other code is unknown: retried a bounded number of times, then given up.
# The token or the app cannot post at all: pause everything until the configuration changes.
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "not_allowed_token_type",
        "two_factor_setup_required",
        "app_access_restricted",
        "access_denied",
        "ekm_access_denied",
        "is_bot",
        "org_login_required",
        "enterprise_is_restricted",
        "team_access_not_granted",
    }
)
CONFIG_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "missing_scope",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "team_not_found",
        "messages_tab_disabled",
        "method_deprecated",
        "deprecated_endpoint",
        "unknown_method",
    }
)
# Rate limits: the workspace takes no messages for a while (ratelimited comes with HTTP 429 and Retry-After).
RATE_LIMIT_ERRORS = frozenset({"ratelimited", "rate_limited", "accesslimited", "message_limit_exceeded"})
# Slack's own trouble: try again later.
TRANSIENT_ERRORS = frozenset(
    {
        "service_unavailable",
        "internal_error",
        "fatal_error",
        "request_timeout",
        "team_added_to_org",
        "update_failed",
        "external_channel_migrating",
        "streaming_state_conflict",
    }
)
# This message can never be posted or updated, however often it is tried.
MESSAGE_ERRORS = frozenset(
    {
        "msg_too_long",
        "msg_blocks_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_attachments",
        "too_many_attachments",
        "too_many_contact_cards",
        "attachment_payload_limit_exceeded",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "metadata_must_be_sent_from_app",
        "markdown_text_conflict",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "is_inactive",
        "block_mismatch",
        "cant_broadcast_message",
        "invalid_arg_name",
        "invalid_array_arg",
        "invalid_charset",
        "invalid_form_data",
        "invalid_post_type",
        "missing_post_type",
    }
)
_CODE = re.compile(r"[a-z0-9_]{1,64}")


def error_code(value: object) -> str:
    """Slack's error code, or "unknown_error" for anything that does not look like one (it is shown in /readyz)."""
    text = str(value or "")
    return text if _CODE.fullmatch(text) else "unknown_error"


# -- errors -----------------------------------------------------------------


class SlackError(PgActivityError):
    code = "slack_error"


class SlackUnavailable(SlackError):
    """Slack or the workspace cannot take messages now: pause everything, try again later."""

    code = "slack_unavailable"

    def __init__(
        self, message: str, *, maybe_posted: bool, retry_after: float | None = None, reason: str = "unavailable"
    ) -> None:
        super().__init__(message)
        self.maybe_posted = maybe_posted
        self.retry_after = retry_after
        self.reason = reason


class SlackRejected(SlackError):
    """Permanent for this message (message deleted, text refused...)."""

    code = "slack_rejected"


class SlackUnknownError(SlackError):
    """An error code this module does not know: retry this message a bounded number of times."""

    code = "slack_unknown_error"

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


class SlackMisconfigured(SlackError):
    """Permanent for every message until the configuration changes (token, channel, scopes)."""

    code = "slack_misconfigured"

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error

    @property
    def is_auth(self) -> bool:
        return self.error in AUTH_ERRORS


# -- what a message shows ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityView:
    """An activity as a message shows it (built from agent_activity_json)."""

    id: str
    organization_id: str
    session_id: str | None
    agent_type: str
    agent_name: str | None
    category: str | None
    status: str
    progress: int | None
    message: str | None
    input_data: Any
    output_data: Any
    error: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActivityView:
        return cls(
            id=str(data["id"]),
            organization_id=str(data["organizationId"]),
            session_id=data.get("sessionId"),
            agent_type=str(data["agentType"]),
            agent_name=data.get("agentName"),
            category=data.get("category"),
            status=str(data["status"]),
            progress=data.get("progress"),
            message=data.get("message"),
            input_data=data.get("inputData"),
            output_data=data.get("outputData"),
            error=data.get("error"),
            created_at=_parse_ts(data["createdAt"]),
            completed_at=_parse_ts(data["completedAt"]) if data.get("completedAt") else None,
        )

    @property
    def duration_seconds(self) -> float | None:
        if self.completed_at is None:
            return None
        return max(0.0, (self.completed_at - self.created_at).total_seconds())


@dataclass(frozen=True, slots=True)
class MessageRef:
    channel: str
    ts: str


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def escape(text: str) -> str:
    """Slack's three control characters (https://docs.slack.dev/messaging/formatting-message-text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_view(data: Any, limit: int) -> str | None:
    """A one-line view of inputData/outputData: the prompt-like field if any, else compact JSON."""
    if data is None or data == {} or data == []:
        return None
    if isinstance(data, dict):
        for key in ("prompt", "task", "input", "query", "message", "text", "summary"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return shorten(value, limit)
    if isinstance(data, str):
        return shorten(data, limit)
    return shorten(json.dumps(data, separators=(",", ":"), ensure_ascii=False), limit)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def render(activity: ActivityView) -> str:
    """The message text (mrkdwn) for the activity as it is now."""
    name = escape(activity.agent_name or activity.agent_type)
    head = f"*{name}*"
    if activity.agent_name and activity.agent_name != activity.agent_type:
        head += f" ({escape(activity.agent_type)})"
    if activity.category:
        head += f" · {escape(activity.category)}"
    duration = activity.duration_seconds
    if activity.status == "completed":
        line = f":white_check_mark: {head} · completed"
        if duration is not None:
            line += f" in {format_duration(duration)}"
    elif activity.status == "failed":
        line = f":x: {head} · failed"
        if duration is not None:
            line += f" after {format_duration(duration)}"
        if activity.error:
            line += f": {escape(shorten(activity.error, ERROR_VIEW_CHARS))}"
    else:
        line = f":hourglass_flowing_sand: {head} · running"
        if activity.progress is not None:
            line += f" {activity.progress}%"
    if activity.message and activity.status != "failed":
        line += f" — {escape(shorten(activity.message, 200))}"
    context = [f"org `{escape(activity.organization_id)}`"]
    if activity.session_id:
        context.append(f"session `{escape(activity.session_id)}`")
    context.append(f"activity `{activity.id}`")
    lines = [line, " · ".join(context)]
    input_view = short_view(activity.input_data, INPUT_VIEW_CHARS)
    if input_view:
        lines.append(f"> {escape(input_view)}")
    if activity.status == "completed":
        output_view = short_view(activity.output_data, OUTPUT_VIEW_CHARS)
        if output_view:
            lines.append(f"→ {escape(output_view)}")
    return "\n".join(lines)


# -- the seam -------------------------------------------------------------------


class SlackActivityService(Protocol):
    """Posts and updates one message per activity. Every method may raise a SlackError."""

    async def check(self) -> str:
        """Verify the credentials (auth.test); returns who we are, for the log."""
        ...

    async def post_agent_start(self, activity: ActivityView) -> MessageRef:
        """Post the activity's message, showing the activity as it is now (usually just started)."""
        ...

    async def update_agent_progress(self, ref: MessageRef, activity: ActivityView) -> None: ...

    async def post_agent_complete(self, ref: MessageRef, activity: ActivityView) -> None: ...

    async def post_agent_fail(self, ref: MessageRef, activity: ActivityView) -> None: ...

    async def find_agent_message(self, activity: ActivityView, *, since: datetime) -> MessageRef | None:
        """The activity's message if one was posted after `since` (a post whose answer was lost)."""
        ...

    async def aclose(self) -> None: ...


# -- slack-sdk ------------------------------------------------------------------


class SlackSdkService:
    """SlackActivityService on slack-sdk's AsyncWebClient.

    Two clients share one aiohttp session. Posts are retried by slack-sdk only on
    429 (Slack says the message was not posted, so a retry cannot duplicate it);
    a 5xx or a dropped connection is ambiguous, so the consumer decides (it looks
    for the message before posting again). Updates and reads are idempotent and
    are also retried on connection and server errors. Every call is cut at
    `deadline` seconds, Retry-After sleeps included, so a post is never in flight
    longer than that.
    """

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        rate_limit_retries: int = 3,
    ) -> None:
        self.channel = channel
        self.timeout = timeout
        self.deadline = deadline_for(timeout)
        self._token = token
        self._base_url = base_url or AsyncWebClient.BASE_URL
        self._rate_limit_retries = rate_limit_retries
        self._session: aiohttp.ClientSession | None = None
        self._post_client: Any = None
        self._client: Any = None

    def _clients(self) -> tuple[Any, Any]:
        if self._session is None or self._session.closed:
            # Created lazily: aiohttp wants a running loop.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            rate_limit = AsyncRateLimitErrorRetryHandler(max_retry_count=self._rate_limit_retries)
            self._post_client = AsyncWebClient(
                token=self._token, base_url=self._base_url, session=self._session, retry_handlers=[rate_limit]
            )
            self._client = AsyncWebClient(
                token=self._token,
                base_url=self._base_url,
                session=self._session,
                retry_handlers=[AsyncConnectionErrorRetryHandler(), AsyncServerErrorRetryHandler(), rate_limit],
            )
        return self._post_client, self._client

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, call: Any, *, posting: bool = False) -> Any:
        try:
            async with asyncio.timeout(self.deadline):
                return await call
        except SlackApiError as exc:
            raise translate(method, exc, posting=posting) from None
        except aiohttp.ClientConnectorError as exc:
            # Never connected: nothing was sent.
            raise SlackUnavailable(
                f"{method}: cannot connect: {exc}", maybe_posted=False, reason="cannot connect"
            ) from None
        except TimeoutError:
            no_answer = f"no answer in {self.deadline:.0f}s"
            raise SlackUnavailable(f"{method}: {no_answer}", maybe_posted=posting, reason=no_answer) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SlackUnavailable(
                f"{method}: {type(exc).__name__}: {exc}", maybe_posted=posting, reason="network error"
            ) from None

    async def check(self) -> str:
        _, client = self._clients()
        response = await self._call("auth.test", client.auth_test())
        return f"team {response.get('team')!r}, bot user {response.get('user')!r}"

    async def post_agent_start(self, activity: ActivityView) -> MessageRef:
        post_client, _ = self._clients()
        response = await self._call(
            "chat.postMessage",
            post_client.chat_postMessage(
                channel=self.channel,
                text=render(activity),
                mrkdwn=True,
                unfurl_links=False,
                unfurl_media=False,
                metadata={
                    "event_type": METADATA_EVENT_TYPE,
                    "event_payload": {"activity_id": activity.id, "organization_id": activity.organization_id},
                },
            ),
            posting=True,
        )
        return MessageRef(str(response.get("channel") or self.channel), str(response["ts"]))

    async def _update(self, ref: MessageRef, activity: ActivityView) -> None:
        _, client = self._clients()
        await self._call("chat.update", client.chat_update(channel=ref.channel, ts=ref.ts, text=render(activity)))

    async def update_agent_progress(self, ref: MessageRef, activity: ActivityView) -> None:
        await self._update(ref, activity)

    async def post_agent_complete(self, ref: MessageRef, activity: ActivityView) -> None:
        await self._update(ref, activity)

    async def post_agent_fail(self, ref: MessageRef, activity: ActivityView) -> None:
        await self._update(ref, activity)

    async def find_agent_message(self, activity: ActivityView, *, since: datetime) -> MessageRef | None:
        """Search the channel's history for our metadata (needs channels:history or groups:history)."""
        _, client = self._clients()
        oldest = f"{since.timestamp() - 120:.6f}"  # room for clock skew between us and Slack
        cursor: str | None = None
        for _page in range(20):
            try:
                response = await self._call(
                    "conversations.history",
                    client.conversations_history(
                        channel=self.channel, oldest=oldest, limit=200, include_all_metadata=True, cursor=cursor
                    ),
                )
            except SlackMisconfigured as exc:
                if exc.error in ("missing_scope", "not_in_channel"):
                    logger.warning(
                        "cannot read the Slack channel history (%s) to check whether an interrupted post "
                        "landed; posting again, which may duplicate that message (grant channels:history)",
                        exc.error,
                    )
                    return None
                raise
            for message in response.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == METADATA_EVENT_TYPE and payload.get("activity_id") == activity.id:
                    return MessageRef(self.channel, str(message["ts"]))
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or not cursor:
                return None
        return None


def deadline_for(timeout: float) -> float:
    """The longest one call may take, retries and Retry-After sleeps included."""
    return max(3 * timeout, timeout + 5)


def translate(method: str, exc: SlackApiError, *, posting: bool) -> SlackError:
    """Slack's answer, sorted: this message never (Rejected), nothing now (Misconfigured, Unavailable),
    or an error we do not know (Unknown: bounded retries)."""
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    raw = data.get("error") if isinstance(data, dict) else None
    error = error_code(raw) if raw else ""
    if status == 429 or error in RATE_LIMIT_ERRORS:
        headers = getattr(response, "headers", None) or {}
        retry_after: float | None
        try:
            retry_after = float(headers.get("Retry-After") or headers.get("retry-after") or 0) or None
        except (TypeError, ValueError):
            retry_after = None
        if retry_after is not None and not 0 < retry_after < 86400:
            retry_after = None
        reason = error or "rate limited"
        return SlackUnavailable(f"{method}: {reason}", maybe_posted=False, retry_after=retry_after, reason=reason)
    if status >= 500 or (status != 200 and not error):
        return SlackUnavailable(f"{method}: HTTP {status}", maybe_posted=posting, reason=f"HTTP {status}")
    if error in AUTH_ERRORS or error in CONFIG_ERRORS:
        return SlackMisconfigured(error)
    if error in TRANSIENT_ERRORS:
        return SlackUnavailable(
            f"{method}: {error}", maybe_posted=posting and error != "service_unavailable", reason=error
        )
    if error in MESSAGE_ERRORS:
        return SlackRejected(f"{method}: {error}")
    return SlackUnknownError(f"{method}: {error or f'HTTP {status}'}", error=error or f"HTTP {status}")
