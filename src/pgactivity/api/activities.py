"""GET /api/activities (search), /api/activities/{id} and /api/activities/{id}/events.

Always scoped to the caller's organization: another organization's activity is
a plain 404, exactly like one that does not exist. Every bad parameter is a 400
with a JSON error body; values only ever reach SQL as parameters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from pgactivity import search
from pgactivity.api.common import MAX_FILTER_LENGTH, BadRequest, principal, runtime

JSON = "application/json"


# -- documentation models (the handlers pass PostgreSQL's JSON through) --------


@dataclass
class Activity:
    id: str
    organizationId: str
    sessionId: str | None
    agentType: str
    agentName: str | None
    category: str | None
    status: str
    progress: int | None
    message: str | None
    inputData: Any
    outputData: Any
    error: str | None
    metadata: Any
    createdAt: str
    updatedAt: str
    completedAt: str | None


@dataclass
class ActivityPage:
    items: list[Activity]
    nextCursor: str | None


@dataclass
class ActivityEvent:
    type: str
    seq: int
    activityId: str
    organizationId: str
    sessionId: str | None
    agentType: str
    agentName: str | None
    category: str | None
    data: dict[str, Any]
    timestamp: str


@dataclass
class EventPage:
    items: list[ActivityEvent]
    nextCursor: str | None


@dataclass
class ErrorDetail:
    code: str
    message: str


@dataclass
class ErrorBody:
    error: ErrorDetail


_ERRORS = {
    400: ResponseSpec(ErrorBody, description="A parameter is invalid", generate_examples=False),
    401: ResponseSpec(ErrorBody, description="Missing, malformed or expired token", generate_examples=False),
}
_NOT_FOUND = {
    404: ResponseSpec(ErrorBody, description="No such activity in your organization", generate_examples=False)
}


# -- parameter parsing -----------------------------------------------------------


def _text(name: str, value: str | None, *, max_length: int = MAX_FILTER_LENGTH) -> str | None:
    if value is None:
        return None
    if value == "" or len(value) > max_length:
        raise BadRequest(detail=f"{name} must be 1 to {max_length} characters")
    if "\x00" in value:
        raise BadRequest(detail=f"{name} must not contain NUL characters")
    return value


def _limit(value: str | None, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 6 or not 1 <= int(value) <= maximum:
        raise BadRequest(detail=f"limit must be an integer from 1 to {maximum}")
    return int(value)


def _timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) > 64:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        hint = " (encode '+' as %2B in URLs)" if " " in value else ""
        raise BadRequest(detail=f"{name} must be an ISO 8601 timestamp such as 2026-01-30T12:00:00Z{hint}") from None


def _activity_id(value: str) -> uuid.UUID:
    try:
        if len(value) > 64:
            raise ValueError(value)
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundException(detail="activity not found") from None


def _json(body: bytes) -> Response[bytes]:
    return Response(body, media_type=JSON, headers={"Cache-Control": "no-store"})


# -- handlers ------------------------------------------------------------------------

_Str = str | None


@get(
    "/api/activities",
    summary="Search activities",
    description=(
        "Activities of the caller's organization, newest first (createdAt, then id, descending). "
        "Filters combine with AND. Pass `nextCursor` back as `cursor` for the next page; "
        "it is null on the last page."
    ),
    tags=["activities"],
    responses={200: ResponseSpec(ActivityPage, description="A page of activities", generate_examples=False), **_ERRORS},
)
async def search_activities(
    request: Request[Any, Any, Any],
    status: Annotated[_Str, Parameter(query="status", description="running, completed or failed")] = None,
    agent_type: Annotated[_Str, Parameter(query="agentType", description="exact agent type")] = None,
    agent_name: Annotated[_Str, Parameter(query="agentName", description="exact agent name")] = None,
    session_id: Annotated[_Str, Parameter(query="sessionId", description="exact session id")] = None,
    category: Annotated[_Str, Parameter(query="category", description="exact category")] = None,
    since: Annotated[
        _Str,
        Parameter(
            query="since",
            description="createdAt >= since (ISO 8601; UTC if no offset)",
            schema_extra={"format": "date-time"},
        ),
    ] = None,
    until: Annotated[
        _Str,
        Parameter(
            query="until",
            description="createdAt < until (ISO 8601; UTC if no offset)",
            schema_extra={"format": "date-time"},
        ),
    ] = None,
    q: Annotated[
        _Str, Parameter(query="q", description="case-insensitive text in the agent name or the message")
    ] = None,
    limit: Annotated[
        _Str,
        Parameter(
            query="limit",
            description=f"page size, 1 to {search.MAX_LIMIT} (default {search.DEFAULT_LIMIT})",
            schema_extra={"oneOf": None, "type": "integer", "minimum": 1, "maximum": search.MAX_LIMIT},
        ),
    ] = None,
    cursor: Annotated[_Str, Parameter(query="cursor", description="nextCursor of the previous page")] = None,
) -> Response[bytes]:
    who = principal(request)
    status = _text("status", status)
    if status is not None and status not in search.STATUSES:
        raise BadRequest(detail=f"status must be one of {', '.join(search.STATUSES)}")
    query = search.ActivityQuery(
        organization_id=who.organization_id,
        status=status,
        agent_type=_text("agentType", agent_type),
        agent_name=_text("agentName", agent_name),
        session_id=_text("sessionId", session_id),
        category=_text("category", category),
        since=_timestamp("since", since),
        until=_timestamp("until", until),
        text=_text("q", q),
        limit=_limit(limit, search.DEFAULT_LIMIT, search.MAX_LIMIT),
    )
    if cursor is not None:
        try:
            query = replace(query, cursor=search.ActivityCursor.decode(cursor))
        except search.InvalidCursor:
            raise BadRequest(detail="cursor is invalid: pass nextCursor from a previous page unchanged") from None
    rt = runtime(request)
    page = await search.search(rt.pool, query, budget=rt.settings.snapshot_max_bytes)
    return _json(page.json_bytes())


@get(
    "/api/activities/{activity_id:str}",
    summary="One activity",
    tags=["activities"],
    responses={
        200: ResponseSpec(Activity, description="The activity", generate_examples=False),
        **_ERRORS,
        **_NOT_FOUND,
    },
)
async def get_activity(
    request: Request[Any, Any, Any],
    activity_id: Annotated[str, Parameter(description="the activity's uuid", schema_extra={"format": "uuid"})],
) -> Response[bytes]:
    who = principal(request)
    found = await search.activity(runtime(request).pool, who.organization_id, _activity_id(activity_id))
    if found is None:
        raise NotFoundException(detail="activity not found")
    return _json(found.encode())


@get(
    "/api/activities/{activity_id:str}/events",
    summary="The events of one activity",
    description="The activity's events from the log, in seq order (as the stream sent them).",
    tags=["activities"],
    responses={
        200: ResponseSpec(EventPage, description="A page of events", generate_examples=False),
        **_ERRORS,
        **_NOT_FOUND,
    },
)
async def get_activity_events(
    request: Request[Any, Any, Any],
    activity_id: Annotated[str, Parameter(description="the activity's uuid", schema_extra={"format": "uuid"})],
    limit: Annotated[
        _Str,
        Parameter(
            query="limit",
            description=f"page size, 1 to {search.MAX_EVENTS_LIMIT} (default {search.DEFAULT_EVENTS_LIMIT})",
            schema_extra={"oneOf": None, "type": "integer", "minimum": 1, "maximum": search.MAX_EVENTS_LIMIT},
        ),
    ] = None,
    cursor: Annotated[_Str, Parameter(query="cursor", description="nextCursor of the previous page")] = None,
) -> Response[bytes]:
    who = principal(request)
    ident = _activity_id(activity_id)
    size = _limit(limit, search.DEFAULT_EVENTS_LIMIT, search.MAX_EVENTS_LIMIT)
    after = None
    if cursor is not None:
        try:
            after = search.EventCursor.decode(cursor)
        except search.InvalidCursor:
            raise BadRequest(detail="cursor is invalid: pass nextCursor from a previous page unchanged") from None
    page = await search.activity_events(runtime(request).pool, who.organization_id, ident, after=after, limit=size)
    if page is None:
        raise NotFoundException(detail="activity not found")
    return _json(page.json_bytes())
