"""GET /: the live dashboard, one static page with its script and stylesheet (no build step).

The page holds no data: its script reads the token from `?access_token=` (or
a form), removes it from the address bar and opens the SSE stream. The
Content-Security-Policy allows only this origin's script, style and
connections, so injected markup could not run even if it reached the DOM
(the script builds the DOM with textContent only).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from litestar import Response, get
from litestar.exceptions import NotFoundException

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the first request's URL may carry ?access_token=
    "X-Frame-Options": "DENY",
}
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@cache
def _static(name: str) -> bytes:
    return resources.files("pgactivity").joinpath("static", name).read_bytes()


@get("/", include_in_schema=False)
async def dashboard() -> Response[bytes]:
    return Response(
        _static("dashboard.html"),
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


@get("/static/{name:str}", include_in_schema=False)
async def static_asset(name: str) -> Response[bytes]:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundException(detail="no such file")
    return Response(
        _static(name),
        media_type=media_type,
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )
