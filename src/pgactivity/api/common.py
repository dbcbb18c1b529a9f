"""What every handler shares: the runtime, the caller's principal, JSON errors."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException

from pgactivity.auth import COOKIE_NAME, Principal
from pgactivity.runtime import Runtime

MAX_FILTER_LENGTH = 200


class BadRequest(HTTPException):
    status_code = 400


def runtime(request: Request[Any, Any, Any]) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def request_token(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    token: str | None = request.query_params.get("access_token") or request.cookies.get(COOKIE_NAME)
    return token


def principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller, from its JWT; raises AuthenticationError (401)."""
    return runtime(request).authenticator.authenticate(request_token(request))


def text_param(request: Request[Any, Any, Any], name: str) -> str | None:
    value: str | None = request.query_params.get(name)
    if value is None:
        return None
    if value == "" or len(value) > MAX_FILTER_LENGTH:
        raise BadRequest(detail=f"{name} must be 1 to {MAX_FILTER_LENGTH} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: it would fail in SQL, after the 200
        raise BadRequest(detail=f"{name} must not contain NUL characters")
    return value


def int_param(request: Request[Any, Any, Any], name: str, value: str | None = None) -> int | None:
    """A non-negative integer in ASCII digits; anything else (`²`, `٣`, `+1`, ` 1`, `1_0`) is a 400."""
    raw = value if value is not None else request.query_params.get(name)
    if raw is None or raw == "":
        return None
    # str.isdigit() alone is true for `²`, which int() refuses, and int() reads `٣`, fullwidth digits and `1_0`.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(detail=f"{name} must be a non-negative integer (ASCII digits)")
    return int(raw)
