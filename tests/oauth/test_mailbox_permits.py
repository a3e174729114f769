"""At most 4 requests in flight per Microsoft mailbox, counted in the database: across the
calendars of one mailbox, across processes (each simulated process has its own engine and
its own in-process semaphores; one test runs real processes), with permits of a crashed
process expiring, and a saturated or throttled mailbox never holding up another one."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from slotguard.calendars import microsoft
from slotguard.calendars.base import ProviderRateLimited
from slotguard.calendars.permits import MailboxPermits, mailbox_key
from slotguard.calendars.rest import MailboxLimits
from slotguard.store import mailbox_repo
from slotguard.store.db import Database
from tests.conftest import Store
from tests.fakes.common import serve
from tests.fakes.graph import GraphFake
from tests.oauth.providers import WINDOW, booking_event, graph_provider


def unique(name: str) -> str:
    """A mailbox of this test alone (the database lives for the whole session)."""
    return f"{name}-{uuid.uuid4().hex[:8]}@contoso.example"


ROOT = Path(__file__).resolve().parents[2]


def _permits(db: Database, **kw: object) -> MailboxPermits:
    """The permits of one simulated process: its own in-process semaphores."""
    return MailboxPermits(db, local=MailboxLimits(), **kw)  # type: ignore[arg-type]


def provider_for(
    http: httpx.AsyncClient,
    refresh_token: str,
    *,
    mailbox: str,
    cal_id: str,
    permits: MailboxPermits | None,
    local: MailboxLimits | None = None,
) -> microsoft.MicrosoftCalendar:
    p, _ = graph_provider(http, refresh_token, cal_id=cal_id)
    ctx = dataclasses.replace(p.ctx, settings={**p.ctx.settings, "mailbox": mailbox})
    if permits is not None:
        ctx = dataclasses.replace(ctx, permits=permits)
    built = microsoft.build(ctx)
    built.rest.sleep, built.rest.policy = p.rest.sleep, p.rest.policy
    if permits is None and local is not None:  # the in-process gate alone, for contrast
        sem = local.get(built.mailbox_key)
        built.rest.limiter = lambda: sem
    return built


async def _writes(provider: microsoft.MicrosoftCalendar, tag: str, n: int) -> None:
    await provider.rest._token()  # one refresh before the burst (refresh tokens rotate)
    await asyncio.gather(
        *(
            provider.upsert_event(booking_event(booking_id=f"bk_01j{tag}{i:03d}"), None)
            for i in range(n)
        )
    )


async def test_one_mailbox_hammered_by_three_processes_and_two_calendars(
    store: Store, graph: GraphFake, http: httpx.AsyncClient
) -> None:
    OWNER = unique("owner")
    graph.add_user(OWNER)
    graph.mailbox_latency_s = 0.03
    dbs = [Database.connect(store.url, pool_size=5) for _ in range(3)]
    try:
        providers = [
            provider_for(
                http,
                graph.issue_refresh_token(OWNER),
                mailbox=OWNER.upper() if cal == "b" else OWNER,  # one mailbox, any case
                cal_id=f"cal_{proc}{cal}",
                permits=_permits(db),
            )
            for proc, db in enumerate(dbs)
            for cal in ("a", "b")
        ]
        await asyncio.gather(*(_writes(p, f"{n:02d}", 6) for n, p in enumerate(providers)))
    finally:
        for db in dbs:
            await db.dispose()
    assert graph.throttled == 0
    assert 2 <= graph.max_in_flight[OWNER] <= 4
    assert len(graph.live_events(OWNER)) == 36
    async with store.db.read() as s:
        key = mailbox_key("microsoft", OWNER)
        assert await mailbox_repo.held(s, mailbox=key, now=dt.datetime.now(dt.UTC)) == 0


async def test_without_the_database_the_mailbox_is_overrun(
    graph: GraphFake, http: httpx.AsyncClient
) -> None:
    """The same load with only per-process semaphores: Graph sees more than 4 at once
    (what the permits above prevent)."""
    OWNER = unique("owner")
    graph.add_user(OWNER)
    graph.mailbox_latency_s = 0.03
    providers = [
        provider_for(
            http,
            graph.issue_refresh_token(OWNER),
            mailbox=OWNER,
            cal_id=f"cal_{proc}",
            permits=None,
            local=MailboxLimits(),
        )
        for proc in range(3)
    ]
    # Some writes may even give up, throttled.
    await asyncio.gather(
        *(_writes(p, f"{n:02d}", 6) for n, p in enumerate(providers)), return_exceptions=True
    )
    assert graph.max_in_flight[OWNER] > 4 and graph.throttled > 0


async def test_a_crashed_holder_frees_its_permits_when_they_expire(store: Store) -> None:
    key = mailbox_key("microsoft", unique("crash"))
    crashed = _permits(store.db, hold=dt.timedelta(seconds=0.6))
    for n in range(4):  # taken, never given back: the process died on the wire
        await crashed._take(key, f"mbx_dead{n}")
    waiting = _permits(store.db, wait_s=10.0)
    started = time.monotonic()
    async with waiting.permit(key):
        waited = time.monotonic() - started
        async with store.db.read() as s:
            held = await mailbox_repo.held(s, mailbox=key, now=dt.datetime.now(dt.UTC))
            assert 1 <= held <= 4  # ours, and crashed ones not yet run out
    assert 0.4 <= waited < 5.0


async def test_a_saturated_mailbox_does_not_hold_up_another(
    store: Store, graph: GraphFake, http: httpx.AsyncClient
) -> None:
    OWNER, OTHER = unique("owner"), unique("other")
    graph.add_user(OWNER)
    graph.add_user(OTHER)
    day = WINDOW.start + dt.timedelta(days=2)
    graph.add_event(OTHER, start=day, end=day + dt.timedelta(hours=1))
    # Another process holds every permit of OWNER's mailbox (requests that hang).
    stuck = _permits(store.db)
    key = mailbox_key("microsoft", OWNER)
    for n in range(4):
        await stuck._take(key, f"mbx_hung{n}")
    busy = provider_for(
        http,
        graph.issue_refresh_token(OWNER),
        mailbox=OWNER,
        cal_id="cal_busy",
        permits=_permits(store.db, wait_s=1.5),
    )
    free = provider_for(
        http,
        graph.issue_refresh_token(OTHER),
        mailbox=OTHER,
        cal_id="cal_free",
        permits=_permits(store.db),
    )

    async def timed_pull() -> float:
        started = time.monotonic()
        pull = await free.pull(None, WINDOW)
        assert len(pull.items) == 1
        return time.monotonic() - started

    blocked, other = await asyncio.gather(
        busy.pull(None, WINDOW), timed_pull(), return_exceptions=True
    )
    # The saturated mailbox's calendar gives up (rescheduled by the engine) ...
    assert isinstance(blocked, ProviderRateLimited) and blocked.retry_after
    # ... while the other mailbox went through at once.
    assert isinstance(other, float) and other < 1.0
    assert OWNER not in graph.max_in_flight


async def test_a_throttled_mailbox_gives_its_permits_back_and_others_go_on(
    store: Store, graph: GraphFake, http: httpx.AsyncClient
) -> None:
    OWNER, OTHER = unique("owner"), unique("other")
    graph.add_user(OWNER)
    graph.add_user(OTHER)
    permits = _permits(store.db)
    throttled = provider_for(
        http, graph.issue_refresh_token(OWNER), mailbox=OWNER, cal_id="cal_t", permits=permits
    )
    other = provider_for(
        http, graph.issue_refresh_token(OTHER), mailbox=OTHER, cal_id="cal_o", permits=permits
    )
    await throttled.check()
    graph.fail_next(
        "delta",
        429,
        {"error": {"code": "ApplicationThrottled", "message": "MailboxConcurrency"}},
        headers={"Retry-After": "120"},
    )
    with pytest.raises(ProviderRateLimited) as raised:
        await throttled.pull(None, WINDOW)
    assert raised.value.retry_after is not None and raised.value.retry_after >= 120
    async with store.db.read() as s:
        now = dt.datetime.now(dt.UTC)
        assert await mailbox_repo.held(s, mailbox=mailbox_key("microsoft", OWNER), now=now) == 0
    pull = await other.pull(None, WINDOW)  # not waiting out the other mailbox's Retry-After
    assert pull.full and pull.cursor


@pytest.mark.slow
def test_real_processes_share_the_limit(store: Store, tmp_path: Path) -> None:
    """Three `python` processes, eight concurrent writes each, one mailbox, one database."""
    OWNER = unique("owner")
    graph = GraphFake()
    graph.add_user(OWNER)
    graph.mailbox_latency_s = 0.05
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    with serve(graph.app) as url:
        graph.base_url = url
        procs = []
        for n in range(3):
            with (tmp_path / f"hammer-{n}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "tests.oauth.mailbox_hammer",
                            store.url,
                            url,
                            graph.issue_refresh_token(OWNER),
                            OWNER,
                            f"p{n}",
                            "8",
                            str(barrier),
                            "3",
                        ],
                        cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        codes = [p.wait(timeout=120) for p in procs]
    logs = "\n".join((tmp_path / f"hammer-{n}.log").read_text() for n in range(3))
    assert codes == [0, 0, 0], logs
    bursts = [
        tuple(map(float, line.split()[1:]))
        for line in logs.splitlines()
        if line.startswith("burst ")
    ]
    # The three bursts overlapped: each process's own semaphore alone would not do.
    assert len(bursts) == 3 and max(b[0] for b in bursts) < min(b[1] for b in bursts), logs
    assert graph.throttled == 0, logs
    assert 2 <= graph.max_in_flight[OWNER] <= 4
    assert len(graph.live_events(OWNER)) == 24
