"""Health, readiness and metrics."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from slotguard.api import envelope
from slotguard.api.deps import get_db
from slotguard.api.errors import unauthorized
from slotguard.config import Settings
from slotguard.store.migrate import current_revision, head_revision

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> Response:
    """The process is up."""
    return envelope.ok({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    """The database answers and its schema is at the migrations' head."""
    db = get_db(request)
    try:
        async with db.read() as s:
            await s.execute(text("SELECT 1"))
        current = await current_revision(db.read_engine)
    except Exception as exc:
        return envelope.error(
            503, "not_ready", "The database is not reachable.", {"reason": type(exc).__name__}
        )
    head = head_revision()
    if current != head:
        return envelope.error(
            503,
            "not_ready",
            "Database migrations are not current.",
            {"current": current, "head": head},
        )
    return envelope.ok({"status": "ready", "revision": current})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (behind SLOTGUARD_METRICS_TOKEN when it is set)."""
    settings: Settings = request.app.state.settings
    expected = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else b""
    if expected:  # set and not empty (compose passes an unset variable as "")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Constant-time: the comparison must not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise unauthorized("A valid metrics token is required (SLOTGUARD_METRICS_TOKEN).")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
