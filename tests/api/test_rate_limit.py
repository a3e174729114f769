"""Per-key rate limits (§1.7)."""

from __future__ import annotations

import httpx

from slotguard.api.app import create_app
from slotguard.config import Settings
from tests.conftest import Store, new_tenant


async def test_over_the_limit_is_429_with_headers(store: Store) -> None:
    app = create_app(
        Settings(database_url=store.url, embedded_worker=False, rate_limit="3/minute"),
        db=store.db,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        a = await new_tenant(store, client)
        b = await new_tenant(store, client)
        seen = [await client.get("/v1/businesses", headers=a.headers()) for _ in range(4)]
        assert [r.status_code for r in seen] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in seen[:3]] == ["2", "1", "0"]
        assert all(r.headers["X-RateLimit-Limit"] == "3" for r in seen)
        over = seen[3]
        assert over.json()["error"] == "rate_limited" and over.json()["code"] == 429
        assert int(over.headers["Retry-After"]) >= 1
        # Another key has its own budget.
        assert (await client.get("/v1/businesses", headers=b.headers())).status_code == 200


async def test_no_limit_by_default(tenant) -> None:  # type: ignore[no-untyped-def]
    r = await tenant.client.get("/v1/businesses", headers=tenant.headers())
    assert "X-RateLimit-Limit" not in r.headers
