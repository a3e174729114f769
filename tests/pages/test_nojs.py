"""The booking page, the manage link and the abuse limits with plain form posts (no
JavaScript), through a test client on the real app, on both stores."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select, update

from slotguard.effects.email import build_messages
from slotguard.effects.outbox import booking_mail
from slotguard.services.booking_pages import token_hash
from slotguard.store.models import Hold, ManageToken, OutboxMessage
from tests.pages.conftest import PUBLIC_URL, Site, browser
from tests.pages.html import Page, read

MANAGE = re.compile(r"/manage/([A-Za-z0-9_-]{20,})")


async def open_page(
    client: httpx.AsyncClient, site: Site, **params: str
) -> tuple[httpx.Response, Page]:
    r = await client.get(f"/book/{site.page['slug']}", params=params)
    return r, read(r.text)


async def open_whole_day(client: httpx.AsyncClient, site: Site) -> tuple[httpx.Response, Page]:
    """The page on its second day with free time: a whole day of slots whatever the time of
    day now (late in the day, the first day may have only a few left)."""
    _, page = await open_page(client, site)
    days = [parse_qs(urlsplit(href).query)["day"][0] for href, _ in page.links if "day=" in href]
    return await open_page(client, site, day=days[1])


async def pick(client: httpx.AsyncClient, page: Page, start: str | None = None) -> httpx.Response:
    form = page.form("/hold")
    chosen = start or page.slot_buttons()[0].value
    return await client.post(form.action, data={**form.fields, "start": chosen or ""})


async def hold_and_confirm(
    client: httpx.AsyncClient, site: Site, *, email: str = "ada@example.com"
) -> tuple[str, str]:
    """Book the first free slot; (manage token, the slot's UTC start)."""
    _, page = await open_page(client, site)
    start = page.slot_buttons()[0].value
    assert start is not None
    held = await pick(client, page, start)
    assert held.status_code == 303, held.text
    form_page = read((await client.get(held.headers["location"])).text)
    details = form_page.form("/confirm")
    done = await client.post(
        details.action,
        data={**details.fields, "name": "Ada Lovelace", "email": email, "note": "Hi"},
    )
    assert done.status_code == 303, done.text
    m = MANAGE.search(done.headers["location"])
    assert m is not None
    return m.group(1), start


async def test_page_lists_days_and_labelled_slot_buttons(site: Site, pages_app: Any) -> None:
    async with browser(pages_app) as client:
        r, page = await open_page(client, site)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "sg_live_" not in r.text
    assert "Intro call" in page.text and "Dr. Test" in page.text
    buttons = page.slot_buttons()
    assert buttons
    first = buttons[0]
    start = dt.datetime.fromisoformat(first.value.replace("Z", "+00:00"))  # type: ignore[union-attr]
    # The accessible name carries the date and local time, and the zone.
    assert first.text.startswith(f"{start:%H:%M}")
    assert f"{start:%A} {start.day} {start:%B %Y}" in first.text
    assert "UTC" in first.text
    # Days with free time are links; the chosen one is marked.
    assert any("day=" in href for href, _ in page.links)
    # Cookies: HttpOnly and SameSite; nothing loaded from elsewhere.
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert all(u.startswith("/static/") for u in page.scripts + page.styles)
    assert len(r.content) < 50_000


async def test_book_confirm_manage_cancel(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        token, start = await hold_and_confirm(client, site)
        r = await client.get(f"/manage/{token}", params={"new": "1"})
        assert r.status_code == 200
        page = read(r.text)
        assert "You are booked" in page.text
        assert f"{PUBLIC_URL}/manage/{token}" in page.text

        # The booking exists through the API, with the visitor's details.
        listed = await t.client.get(
            "/v1/bookings", params={"business_id": site.business["id"]}, headers=t.headers()
        )
        (booking,) = listed.json()["data"]
        assert booking["customer_email"] == "ada@example.com"
        assert booking["customer_name"] == "Ada Lovelace"
        assert booking["description"] == "Hi"
        assert booking["start_time"] == start
        assert booking["hold_id"] is not None
        assert booking["id"] not in token

        # Only the hash of the token is stored; the confirmation mail carries the link.
        async with t.store.db.read() as s:
            row = await s.get(ManageToken, token_hash(token))
            assert row is not None and row.booking_id == booking["id"]
            assert (await s.get(ManageToken, token)) is None
            mails = (
                await s.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.booking_id == booking["id"], OutboxMessage.kind == "email"
                    )
                )
            ).all()
        (mail_row,) = mails
        messages = build_messages(
            booking_mail(mail_row.payload["mail"]), "confirmation", from_addr="sg@example.com"
        )
        by_role = {str(m["To"]): m.get_body(("plain",)).get_content() for m in messages}  # type: ignore[union-attr]
        assert f"{PUBLIC_URL}/manage/{token}" in by_role["Ada Lovelace <ada@example.com>"]
        owner_text = next(v for k, v in by_role.items() if "owner@example.com" in k)
        assert "/manage/" not in owner_text

        # Cancel from the manage page.
        form = read(r.text).form("/cancel")
        done = await client.post(form.action, data={**form.fields, "reason": "Cannot make it"})
        assert done.status_code == 303
        after = await client.get(done.headers["location"])
        text = read(after.text).text
        assert "Your booking is cancelled" in text
        assert "Cancelled on" in text
        got = await t.client.get(f"/v1/bookings/{booking['id']}", headers=t.headers())
        assert got.json()["data"]["status"] == "cancelled"
        assert got.json()["data"]["cancellation_reason"] == "Cannot make it"
        # The state stays visible; no forms to act on a cancelled booking.
        again = read((await client.get(f"/manage/{token}")).text)
        assert "Cancelled" in again.text
        assert not [f for f in again.forms if "/cancel" in f.action or "/reschedule" in f.action]
        # The slot is free again.
        _, fresh = await open_page(client, site)
        assert start in [b.value for b in fresh.slot_buttons()]


async def test_reschedule_from_manage_link(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        token, start = await hold_and_confirm(client, site)
        page = read((await client.get(f"/manage/{token}")).text)
        form = page.form("/reschedule")
        targets = [b.value for b in form.buttons if b.value and b.value != start]
        new_start = targets[3]
        done = await client.post(form.action, data={**form.fields, "start": new_start})
        assert done.status_code == 303, done.text
        after = read((await client.get(done.headers["location"])).text)
        assert "moved to the new time" in after.text
    listed = await t.client.get(
        "/v1/bookings", params={"business_id": site.business["id"]}, headers=t.headers()
    )
    (booking,) = listed.json()["data"]
    assert booking["start_time"] == new_start
    assert booking["version"] == 2


async def test_reschedule_to_a_taken_slot_shows_fresh_slots(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        token, start = await hold_and_confirm(client, site)
        page = read((await client.get(f"/manage/{token}")).text)
        form = page.form("/reschedule")
        target = next(b.value for b in form.buttons if b.value and b.value != start)
        assert target is not None
        # Someone books that time through the API meanwhile.
        end = dt.datetime.fromisoformat(target.replace("Z", "+00:00")) + dt.timedelta(minutes=30)
        r = await t.client.post(
            "/v1/bookings",
            json={
                "business_id": site.business["id"],
                "start_time": target,
                "end_time": end.isoformat(),
            },
            headers=t.headers(**{"Idempotency-Key": f"k-{token[:10]}"}),
        )
        assert r.status_code == 201, r.text
        taken = await client.post(form.action, data={**form.fields, "start": target})
        assert taken.status_code == 409
        again = read(taken.text)
        assert "was just taken" in again.text
        assert target not in [b.value for b in again.slot_buttons()]
        assert again.slot_buttons()


async def test_two_visitors_race_for_one_slot(site: Site, pages_app: Any) -> None:
    async with browser(pages_app) as alice, browser(pages_app, addr="198.51.100.9") as bob:
        _, page_a = await open_page(alice, site)
        _, page_b = await open_page(bob, site)
        start = page_a.slot_buttons()[0].value
        assert start == page_b.slot_buttons()[0].value
        assert (await pick(alice, page_a, start)).status_code == 303
        lost = await pick(bob, page_b, start)
        assert lost.status_code == 409
        seen = read(lost.text)
        assert "was just taken" in seen.text
        values = [b.value for b in seen.slot_buttons()]
        assert values and start not in values
        # The held slot is invisible to everyone else too.
        _, fresh = await open_page(bob, site)
        assert start not in [b.value for b in fresh.slot_buttons()]


async def test_one_live_hold_per_visitor(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        _, page = await open_whole_day(client, site)
        a, b = page.slot_buttons()[0].value, page.slot_buttons()[2].value
        first = await pick(client, page, a)
        second = await pick(client, page, b)
        assert first.status_code == second.status_code == 303
        hold_a = first.headers["location"].split("/hold/")[1].split("?")[0]
        got = await t.client.get(f"/v1/holds/{hold_a}", headers=t.headers())
        assert got.json()["data"]["status"] == "released"
        _, again = await open_whole_day(client, site)
        assert "You are holding" in again.text
        assert a in [x.value for x in again.slot_buttons()]


async def test_holds_per_address_are_capped(site: Site, pages_app: Any) -> None:
    visitors = [browser(pages_app, addr="192.0.2.44") for _ in range(4)]
    try:
        codes = []
        for i, client in enumerate(visitors):
            _, page = await open_whole_day(client, site)
            r = await pick(client, page, page.slot_buttons()[i * 2].value)
            codes.append(r.status_code)
        assert codes == [303, 303, 303, 429]
    finally:
        for client in visitors:
            await client.aclose()


async def test_public_hold_is_short(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        _, page = await open_page(client, site)
        r = await pick(client, page)
        hold_id = r.headers["location"].split("/hold/")[1].split("?")[0]
    got = (await t.client.get(f"/v1/holds/{hold_id}", headers=t.headers())).json()["data"]
    left = dt.datetime.fromisoformat(got["expires_at"].replace("Z", "+00:00")) - dt.datetime.now(
        dt.UTC
    )
    assert dt.timedelta(seconds=100) < left <= dt.timedelta(seconds=120)


async def test_forms_need_the_csrf_token(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        _, page = await open_page(client, site)
        form = page.form("/hold")
        start = page.slot_buttons()[0].value
        bad = await client.post(form.action, data={**form.fields, "csrf": "0" * 32, "start": start})
        assert bad.status_code == 403
        missing = await client.post(form.action, data={"tz": "UTC", "start": start or ""})
        assert missing.status_code == 403
    # Another browser (no cookie) replaying a valid-looking form is refused too.
    async with browser(pages_app) as other:
        stolen = await other.post(form.action, data={**form.fields, "start": start})
        assert stolen.status_code == 403
    holds = await t.client.get(
        "/v1/audit-log", params={"action": "hold_created"}, headers=t.headers()
    )
    assert holds.json()["data"] == []


async def test_details_are_validated(site: Site, pages_app: Any) -> None:
    async with browser(pages_app) as client:
        _, page = await open_page(client, site)
        held = await pick(client, page)
        form = read((await client.get(held.headers["location"])).text).form("/confirm")
        r = await client.post(form.action, data={**form.fields, "name": "", "email": "nope"})
        assert r.status_code == 422
        text = read(r.text).text
        assert "Please enter your name" in text and "valid email" in text
        assert 'aria-invalid="true"' in r.text
        # The hold is still there: fixing the form books it.
        ok = await client.post(
            form.action, data={**form.fields, "name": "Bo", "email": "bo@example.com"}
        )
        assert ok.status_code == 303


async def test_hold_that_ran_out_shows_fresh_slots(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        _, page = await open_page(client, site)
        held = await pick(client, page)
        hold_id = held.headers["location"].split("/hold/")[1].split("?")[0]
        form = read((await client.get(held.headers["location"])).text).form("/confirm")
        async with t.store.db.write() as s:
            await s.execute(
                update(Hold)
                .where(Hold.id == hold_id)
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
        r = await client.post(
            form.action, data={**form.fields, "name": "Cy", "email": "cy@example.com"}
        )
        assert r.status_code == 409
        seen = read(r.text)
        assert "ran out" in seen.text
        assert seen.slot_buttons()
    listed = await t.client.get(
        "/v1/bookings", params={"business_id": site.business["id"]}, headers=t.headers()
    )
    assert listed.json()["data"] == []


async def test_someone_elses_hold_cannot_be_confirmed(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as alice, browser(pages_app) as mallory:
        _, page = await open_page(alice, site)
        held = await pick(alice, page)
        form = read((await alice.get(held.headers["location"])).text).form("/confirm")
        _, own = await open_page(mallory, site)
        csrf = own.form("/hold").fields["csrf"]
        r = await mallory.post(
            form.action,
            data={**form.fields, "csrf": csrf, "name": "M", "email": "m@example.com"},
        )
        assert r.status_code == 409
        assert "no longer yours" in read(r.text).text
        page_b = await mallory.get(held.headers["location"])
        assert page_b.status_code == 404
    listed = await t.client.get(
        "/v1/bookings", params={"business_id": site.business["id"]}, headers=t.headers()
    )
    assert listed.json()["data"] == []


async def test_times_in_the_visitors_zone(site: Site, pages_app: Any) -> None:
    async with browser(pages_app) as client:
        r, page = await open_page(client, site, tz="America/New_York")
    assert r.status_code == 200
    for button in page.slot_buttons()[:5]:
        start = dt.datetime.fromisoformat(button.value.replace("Z", "+00:00"))  # type: ignore[union-attr]
        local = start.astimezone(dt.timezone(dt.timedelta(hours=-5)))  # EST in December
        assert button.text.startswith(f"{local:%H:%M} EST")
        assert "America/New_York" in button.text
        assert f"{local:%A} {local.day} {local:%B %Y}" in button.text


async def test_bad_input_gives_clear_4xx_pages(site: Site, pages_app: Any) -> None:
    async with browser(pages_app) as client:
        r = await client.get("/book/no-such-page")
        assert r.status_code == 404 and "text/html" in r.headers["content-type"]
        r = await client.get("/book/..%2F..%2Fetc")
        assert r.status_code == 404
        r, page = await open_page(client, site, tz="Mars/Olympus")
        assert r.status_code == 400
        assert "not known" in page.text and page.slot_buttons()
        _, page = await open_page(client, site)
        form = page.form("/hold")
        r = await client.post(form.action, data={**form.fields, "start": "tomorrow"})
        assert r.status_code == 422
        r = await client.post(form.action, data={**form.fields, "start": "2001-01-01T09:00:00Z"})
        assert r.status_code == 409
        r = await client.post(
            form.action, content=b"\xff\xfe", headers={"content-type": "multipart/form-data"}
        )
        assert r.status_code == 403
        r = await client.get("/manage/short")
        assert r.status_code == 404
        r = await client.get("/manage/" + "x" * 43)
        assert r.status_code == 404
        r = await client.get(f"/book/{site.page['slug']}/hold/hld_nope")
        assert r.status_code == 404
        r = await client.get("/static/pages/v/../../config.py")
        assert r.status_code == 404
        # Reloading a form's address (a post target) leads back to the page.
        r = await client.get(f"/book/{site.page['slug']}/confirm")
        assert (r.status_code, r.headers["location"]) == (303, f"/book/{site.page['slug']}")


async def test_a_page_whose_class_was_deleted_is_a_4xx_page(admin: Any, pages_app: Any) -> None:
    from tests.pages.conftest import make_page

    name = f"consult_{admin.account_id[-6:].lower()}"
    r = await admin.client.post(
        "/v1/meeting-classes",
        json={"name": name, "display_name": "Consultation", "duration_minutes": 45},
        headers=admin.headers(),
    )
    assert r.status_code == 201, r.text
    made = await make_page(admin, meeting_class=name)
    async with browser(pages_app) as client:
        ok = await client.get(f"/book/{made.page['slug']}")
        assert ok.status_code == 200 and "45 minutes" in ok.text
        gone = await admin.client.delete(f"/v1/meeting-classes/{name}", headers=admin.headers())
        assert gone.status_code == 200, gone.text
        r = await client.get(f"/book/{made.page['slug']}")
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"].startswith("text/html")
    assert "Not available right now" in r.text


async def test_every_page_is_light(site: Site, pages_app: Any) -> None:
    async with browser(pages_app) as client:
        token, _ = await hold_and_confirm(client, site)
        for url in (f"/book/{site.page['slug']}", f"/manage/{token}", "/dashboard"):
            r = await client.get(url)
            assert len(r.content) < 50_000, (url, len(r.content))
        for asset in ("slotguard.css", "pages.js"):
            page = read((await client.get(f"/book/{site.page['slug']}")).text)
            url = next(u for u in page.scripts + page.styles if u.endswith(asset))
            r = await client.get(url)
            assert r.status_code == 200 and len(r.content) < 10_000
            assert "immutable" in r.headers["cache-control"]
