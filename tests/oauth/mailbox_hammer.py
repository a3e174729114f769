"""One process of ``test_mailbox_permits.test_real_processes_share_the_limit``: N
concurrent event writes to one Graph mailbox through the database's permits.

    python -m tests.oauth.mailbox_hammer DATABASE_URL GRAPH_URL REFRESH_TOKEN MAILBOX TAG N \
        BARRIER_DIR PROCESSES

Every process waits at a barrier (a file per ready process in BARRIER_DIR) so that the
bursts overlap, then prints ``burst START END`` (wall-clock seconds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from slotguard.calendars import microsoft, oauth
from slotguard.calendars.base import ProviderContext
from slotguard.calendars.permits import MailboxPermits
from slotguard.calendars.rest import RetryPolicy
from slotguard.calendars.tokens import RefreshTokenGrant
from slotguard.config import Settings
from slotguard.store.db import Database
from tests.oauth.providers import booking_event


async def main(
    db_url: str,
    graph_url: str,
    refresh_token: str,
    mailbox: str,
    tag: str,
    n: int,
    barrier: Path,
    processes: int,
) -> None:
    settings = Settings(
        microsoft_client_id="ms-client",
        microsoft_client_secret="ms-secret",
        microsoft_graph_url=f"{graph_url}/v1.0",
        microsoft_login_url=graph_url,
    )
    client = oauth.oauth_client(settings, "microsoft")
    assert client is not None
    db = Database.connect(db_url, pool_size=5)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            ctx = ProviderContext(
                calendar_id=f"cal_{tag}",
                provider="microsoft",
                url=None,
                settings={"api_url": settings.microsoft_graph_url, "mailbox": mailbox},
                credentials={},
                http=http,
                business_tz=ZoneInfo("UTC"),
                timeout_s=5.0,
                tokens=RefreshTokenGrant(http, client, refresh_token=refresh_token),
                permits=MailboxPermits(db),
            )
            provider = microsoft.build(dataclasses.replace(ctx))
            provider.rest.policy = RetryPolicy(rng=random.Random(7))
            await provider.rest._token()  # one refresh before the burst (tokens rotate)
            (barrier / tag).touch()
            deadline = time.monotonic() + 60
            while len(list(barrier.iterdir())) < processes:
                if time.monotonic() > deadline:
                    raise SystemExit("the other processes never got ready")
                await asyncio.sleep(0.01)
            start = time.time()
            await asyncio.gather(
                *(
                    provider.upsert_event(booking_event(booking_id=f"bk_01j{tag}{i:03d}"), None)
                    for i in range(n)
                )
            )
            print(f"burst {start:.3f} {time.time():.3f}", flush=True)
    finally:
        await db.dispose()


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], a[3], a[4], int(a[5]), Path(a[6]), int(a[7])))
