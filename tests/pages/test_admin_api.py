"""`/v1/booking-pages` (§12): the admin API on both stores."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import make_business
from tests.conftest import Tenant, new_tenant
from tests.pages.conftest import PUBLIC_URL, Site, browser, make_page


async def test_create_read_list_update_delete(admin: Tenant) -> None:
    business = await make_business(admin)
    r = await admin.client.post(
        "/v1/booking-pages",
        json={"business_id": business["id"], "slug": "intro-call", "duration_minutes": 45},
        headers=admin.headers(),
    )
    if r.status_code == 409:  # the slug is global; a second store run reuses the name
        r = await admin.client.post(
            "/v1/booking-pages",
            json={
                "business_id": business["id"],
                "slug": f"intro-{business['id'][-8:].lower()}",
                "duration_minutes": 45,
            },
            headers=admin.headers(),
        )
    assert r.status_code == 201, r.text
    page = r.json()["data"]
    assert page["id"].startswith("bpg_")
    assert page["url"] == f"{PUBLIC_URL}/book/{page['slug']}"
    assert page["days_ahead"] == 14
    assert page["duration_minutes"] == 45
    assert r.headers["location"] == f"/v1/booking-pages/{page['id']}"

    got = await admin.client.get(f"/v1/booking-pages/{page['id']}", headers=admin.headers())
    assert got.status_code == 200
    assert got.json()["data"] == page

    listed = await admin.client.get("/v1/booking-pages", headers=admin.headers())
    assert [p["id"] for p in listed.json()["data"]] == [page["id"]]

    patched = await admin.client.patch(
        f"/v1/booking-pages/{page['id']}",
        json={"title": "Longer call", "duration_minutes": None, "days_ahead": 7},
        headers=admin.headers(),
    )
    assert patched.status_code == 200, patched.text
    data = patched.json()["data"]
    assert (data["title"], data["duration_minutes"], data["days_ahead"]) == ("Longer call", None, 7)

    deleted = await admin.client.delete(f"/v1/booking-pages/{page['id']}", headers=admin.headers())
    assert deleted.json()["data"] == {"id": page["id"], "deleted": True}
    gone = await admin.client.get(f"/v1/booking-pages/{page['id']}", headers=admin.headers())
    assert gone.status_code == 404
    public = await admin.client.get(f"/book/{page['slug']}")
    assert public.status_code == 404
    assert "text/html" in public.headers["content-type"]


async def test_generated_slug_and_duplicates(site: Site) -> None:
    t = site.tenant
    assert site.page["slug"].startswith("intro-call-")
    r = await t.client.post(
        "/v1/booking-pages",
        json={"business_id": site.business["id"], "slug": site.page["slug"]},
        headers=t.headers(),
    )
    assert r.status_code == 409
    assert r.json()["error"] == "conflict"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"slug": "A b"}, 422, "validation_error"),
        ({"slug": "ab"}, 422, "validation_error"),
        ({"days_ahead": 0}, 422, "validation_error"),
        ({"days_ahead": 91}, 422, "validation_error"),
        ({"duration_minutes": 2}, 422, "validation_error"),
        ({"meeting_class": "no_such_class"}, 422, "validation_error"),
        ({"business_id": "biz_unknown"}, 404, "not_found"),
        ({"unknown_field": 1}, 422, "validation_error"),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    admin: Tenant, body: dict[str, Any], status: int, error: str
) -> None:
    business = await make_business(admin)
    r = await admin.client.post(
        "/v1/booking-pages", json={"business_id": business["id"], **body}, headers=admin.headers()
    )
    assert r.status_code == status, r.text
    assert r.json()["error"] == error


async def test_other_accounts_page_is_not_found(site: Site, pages_app: Any) -> None:
    async with browser(pages_app) as client:
        other = await new_tenant(site.tenant.store, client)
        r = await client.get(f"/v1/booking-pages/{site.page['id']}", headers=other.headers())
        assert r.status_code == 404
        r = await client.delete(f"/v1/booking-pages/{site.page['id']}", headers=other.headers())
        assert r.status_code == 404
        listed = await client.get("/v1/booking-pages", headers=other.headers())
        assert listed.json()["data"] == []


async def test_needs_an_admin_key(site: Site) -> None:
    t = site.tenant
    r = await t.client.post(
        "/v1/agents",
        json={"name": "reader", "scopes": ["availability:read"], "allowed_business_ids": "*"},
        headers=t.headers(),
    )
    assert r.status_code == 201, r.text
    agent_id = r.json()["data"]["id"]
    r = await t.client.post(f"/v1/agents/{agent_id}/keys", headers=t.headers())
    assert r.status_code == 201, r.text
    agent_key = r.json()["data"]["key"]
    r = await t.client.get("/v1/booking-pages", headers={"Authorization": f"Bearer {agent_key}"})
    assert r.status_code == 403
    r = await t.client.get("/v1/booking-pages")
    assert r.status_code == 401


async def test_make_page_helper(admin: Tenant) -> None:
    made = await make_page(admin, days_ahead=3)
    assert made.page["days_ahead"] == 3


async def test_concurrent_creates_of_one_slug_give_one_page(admin: Tenant) -> None:
    import asyncio
    import uuid

    business = await make_business(admin)
    slug = f"race-{uuid.uuid4().hex[:12]}"
    results = await asyncio.gather(
        *(
            admin.client.post(
                "/v1/booking-pages",
                json={"business_id": business["id"], "slug": slug},
                headers=admin.headers(),
            )
            for _ in range(4)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409], [r.text for r in results]
