"""The ASGI application."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from slotguard import pages
from slotguard.api import docs_ui, errors, mcp_mount, openapi
from slotguard.api.methods import HeadAsGet
from slotguard.api.middleware import RequestMiddleware
from slotguard.api.ratelimit import limiter_from_spec
from slotguard.api.routes import (
    agents,
    audit,
    availability,
    booking_pages,
    bookings,
    businesses,
    calendar_oauth,
    calendars,
    holds,
    me,
    outbox,
    system,
    webhooks,
)
from slotguard.calendars.sync import SyncConfig
from slotguard.config import Settings, get_settings
from slotguard.effects import worker
from slotguard.logs import configure_logging
from slotguard.store.db import Database

# How long shutdown waits for sync-now runs still going.
SYNC_GRACE_S = 5.0


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    """Build the app. With `db` given, the caller owns the database (tests)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = db is None
        app.state.db = db or Database.connect(
            settings.database_url,
            pool_size=settings.db_pool_size,
            busy_timeout_s=settings.sqlite_busy_timeout_s,
        )
        app.state.settings = settings
        stop = asyncio.Event()
        task = None
        if settings.embedded_worker:
            task = asyncio.create_task(worker.run(app.state.db, stop))
        try:
            async with AsyncExitStack() as stack:
                # One calendar HTTP client for the app's sync-now requests (connection
                # reuse), closed after the syncs they started.
                app.state.calendar_http = await stack.enter_async_context(
                    SyncConfig.from_settings(settings).client()
                )
                stack.push_async_callback(_finish_syncs, app)
                if own:
                    # The app's ~150k startup objects live as long as the process; frozen,
                    # the collector stops rescanning them on every full collection.
                    gc.collect()
                    gc.freeze()
                yield
        finally:
            if mcp is not None:
                await mcp.aclose()
            stop.set()
            if task is not None:
                await task
            if own:
                await app.state.db.dispose()

    app = FastAPI(
        title="slotguard",
        version="0.1.0",
        description="Self-hosted scheduling API: a slot is never booked twice.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.rate_limiter = limiter_from_spec(settings.rate_limit)
    if db is not None:
        app.state.db = db
        app.state.settings = settings
    errors.install(app)
    docs_ui.install(app)
    routers = [
        module.router
        for module in (
            system,
            businesses,
            availability,
            holds,
            bookings,
            audit,
            me,
            agents,
            webhooks,
            outbox,
            calendar_oauth,
            calendars,
            booking_pages,
        )
    ]
    for router in routers:
        app.include_router(router)
    pages.install(app)
    openapi.install(app, routers)
    mcp: mcp_mount.LazyMcp | None = None
    if settings.mcp_enabled and mcp_mount.available():
        mcp = mcp_mount.LazyMcp(app)
        asgi: Any = mcp  # an ASGI object: Starlette's Route calls it as an app, not a handler
        # First among the routes: each tool call is a /mcp request, and the router tries its
        # routes in order (the exact path shadows none of them).
        route = Route("/mcp", asgi, methods=["GET", "POST", "DELETE"], include_in_schema=False)
        app.router.routes.insert(0, route)
        app.state.mcp = mcp
    app.add_middleware(HeadAsGet)  # inside RequestMiddleware, so the access log says HEAD
    app.add_middleware(RequestMiddleware)
    return app


async def _finish_syncs(app: FastAPI) -> None:
    """Let syncs started by requests end (briefly) before their client closes."""
    tasks: set[asyncio.Task[object]] = app.state.__dict__.get("calendar_sync_tasks", set())
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=SYNC_GRACE_S)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
    app.state.calendar_http = None
