"""Booking pages for people and the owner's dashboard (§12), served by slotguard itself."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Response

from slotguard.pages import book, dashboard, manage, web

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

static_router = APIRouter(include_in_schema=False)


@static_router.get("/static/pages/{version}/{name}")
async def static_file(version: str, name: str) -> Response:
    """The pages' own CSS and script (versioned URLs, cached for a year)."""
    path = web.STATIC / name
    suffix = path.suffix
    if "/" in name or suffix not in _TYPES or not path.is_file():
        return Response("Not found", status_code=404, media_type="text/plain")
    cache = "public, max-age=31536000, immutable" if version == web.static_version() else "no-cache"
    return Response(
        path.read_bytes(),
        media_type=_TYPES[suffix],
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )


def install(app: FastAPI) -> None:
    app.include_router(static_router)
    app.include_router(book.router)
    app.include_router(manage.router)
    app.include_router(dashboard.router)
