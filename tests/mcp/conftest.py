"""MCP fixtures: the app with /mcp, the SDK's own client in memory and over streamable HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from fastapi import FastAPI
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from slotguard.api.app import create_app
from slotguard.config import Settings
from slotguard.mcp.http import lifespan
from slotguard.mcp.server import Backend, SlotguardMCP, build_server
from tests.conftest import Store, Tenant, new_tenant

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="session")
async def mcp_app(store: Store) -> AsyncIterator[FastAPI]:
    """One app per store with /mcp, its MCP session manager running."""
    app = create_app(Settings(database_url=store.url, embedded_worker=False), db=store.db)
    async with running(app):
        yield app


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """The MCP lifespan in a task of its own.

    Its anyio task group must be entered and left by one task; pytest-asyncio sets up and
    tears down a session fixture in different tasks, so the fixture cannot hold it itself.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold_open() -> None:
        async with lifespan(app.state.mcp.endpoint()):
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold_open())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # it failed to start: raise its error here
        waiter.cancel()
        await task
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def mtenant(store: Store, mcp_app: FastAPI) -> AsyncIterator[Tenant]:
    """A fresh account whose HTTP client talks to the MCP-enabled app."""
    transport = httpx.ASGITransport(app=mcp_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield await new_tenant(store, client)


def in_memory_server(app: FastAPI, key: str) -> SlotguardMCP:
    """A server acting as `key`, reaching the API in-process (as `serve` does)."""
    backend = Backend(
        base_url="http://slotguard.internal",
        api_key=key,
        transport=lambda: httpx.ASGITransport(app=app),
    )
    return build_server(backend)


@pytest.fixture
def memory_client(mcp_app: FastAPI) -> Callable[[str], AbstractAsyncContextManager[Client]]:
    @asynccontextmanager
    async def open_client(key: str) -> AsyncIterator[Client]:
        server = in_memory_server(mcp_app, key)
        async with Client(server, raise_exceptions=True) as c:
            yield c
        await server.backend.aclose()

    return open_client


@pytest.fixture
def http_client(mcp_app: FastAPI) -> Callable[[str], AbstractAsyncContextManager[Client]]:
    """The SDK's client over streamable HTTP to /mcp of the app, with a bearer key."""

    @asynccontextmanager
    async def open_client(key: str) -> AsyncIterator[Client]:
        transport = httpx2.ASGITransport(app=mcp_app)
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx2.AsyncClient(transport=transport, base_url=BASE, headers=headers) as h,
            Client(streamable_http_client(f"{BASE}/mcp", http_client=h)) as c,
        ):
            yield c

    return open_client


def structured(result: Any) -> dict[str, Any]:
    data = result.structured_content
    assert isinstance(data, dict), result
    return data
