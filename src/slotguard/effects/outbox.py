"""The outbox worker: claim due messages, deliver them, record what happened.

At least once, whatever dies when:

* Messages are written in the transaction of the change (`services/events.py`), so a
  committed change always has its messages, and a rolled-back one has none.
* A worker claims a batch in one short transaction (lease + attempt count, see
  `store/outbox_repo.py`), delivers *outside* any transaction, then records the outcomes
  in a later short transaction (the same one that claims the next batch), each only if it
  still holds the lease. If it dies in between, the lease runs out and another worker (or
  itself, restarted) delivers again: a duplicate, never a loss. Duplicates carry the same
  `webhook-id` (the event id) and, for mail, the same Message-ID, so receivers can drop
  them.
* A delivery never outlives its lease: each one is cut off a margin before the lease ends,
  so no second worker can start the same message while the first is still sending it.
* On stop (SIGTERM), the worker claims nothing more, lets in-flight deliveries finish for a
  bounded time, records them, and releases the leases of the rest unattempted.

Retries follow `webhooks.RETRY_SCHEDULE` (with jitter) for every kind; a throttled calendar
write is not attempted again before the provider's Retry-After (at most the schedule's
longest delay). After the last attempt a message is dead until an operator revives it
(`slotguard outbox retry-dead`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import httpx
import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from slotguard.calendars.base import retry_delay
from slotguard.calendars.writeback import CalendarWriter
from slotguard.effects.email import (
    BookingMail,
    EmailKind,
    MailDeliveryError,
    MailSender,
    build_messages,
)
from slotguard.effects.webhooks import RETRY_SCHEDULE, DeliveryResult, deliver, next_attempt_delay
from slotguard.store import outbox_repo as repo
from slotguard.store.db import Database
from slotguard.store.models import OutboxMessage, WebhookDelivery, WebhookEndpoint
from slotguard.store.outbox_repo import DEAD, DELIVERED, PENDING, Outcome

log = structlog.get_logger("slotguard.outbox")

Clock = Callable[[], dt.datetime]

# Time kept between the end of a delivery and the end of its lease, for recording it.
LEASE_MARGIN_S = 2.0
WEBHOOK_TIMEOUT_S = 15.0
"""A 2xx within this time is a success; anything slower is a failed attempt."""
GONE_REASON = "receiver answered 410 Gone"
MAX_RETRY_DELAY_S = float(max(RETRY_SCHEDULE))
"""A receiver's Retry-After is obeyed up to the schedule's longest delay (10 h)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OutboxSettings(BaseSettings):
    """Tuning of the outbox worker (`SLOTGUARD_OUTBOX_*`); the defaults suit production."""

    model_config = SettingsConfigDict(
        env_prefix="SLOTGUARD_OUTBOX_", env_file=".env", extra="ignore"
    )

    lease_seconds: float = Field(
        default=60.0,
        ge=3.0,
        description="How long a claimed message is reserved for its worker; a message "
        "whose worker died is retried once this has passed.",
    )
    batch_size: int = Field(default=16, ge=1, le=1000, description="Messages per claim.")
    # More is slower, not faster: httpcore's pool does work quadratic in the number of
    # concurrent requests (measured: 32 in flight ~440 webhooks/s, 64 ~290 on one core).
    max_in_flight: int = Field(
        default=32, ge=1, le=1000, description="Deliveries one worker runs at once."
    )
    poll_interval_ms: int = Field(
        default=100, ge=10, le=10_000, description="Idle wait between checks for due messages."
    )
    shutdown_grace_seconds: float = Field(
        default=10.0,
        ge=0.0,
        description="On stop, how long in-flight deliveries may finish before their leases "
        "are released.",
    )


@dataclass
class _Job:
    message: OutboxMessage
    endpoint: WebhookEndpoint | None
    task: asyncio.Task[None] | None = None
    outcome: Outcome | None = None
    deliveries: list[WebhookDelivery] = field(default_factory=list)
    disable_endpoint: bool = False


class OutboxWorker:
    """Delivers outbox messages. Several may run at once, in one process or many."""

    def __init__(
        self,
        db: Database,
        *,
        http: httpx.AsyncClient,
        mailer: MailSender,
        email_from: str,
        settings: OutboxSettings | None = None,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        worker_id: str | None = None,
        calendar_writer: CalendarWriter | None = None,
    ) -> None:
        self.db = db
        self.calendar_writer = calendar_writer
        self.http = http
        self.mailer = mailer
        self.email_from = email_from
        self.settings = settings or OutboxSettings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.worker_id = worker_id or f"wrk_{uuid.uuid4().hex[:16]}"
        self._jobs: dict[str, _Job] = {}
        self._finished: list[_Job] = []
        self._wake = asyncio.Event()
        self.delivered = 0
        """Messages this worker recorded as delivered (for figures and tests)."""

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then finish or release what is held, and return."""
        poll = self.settings.poll_interval_ms / 1000
        try:
            while not stop.is_set():
                try:
                    claimed, wanted = await self._cycle(claim=True)
                except Exception:
                    log.exception("outbox.loop_failed")
                    await _wait_any(stop, None, timeout=1.0)
                    continue
                if claimed and claimed == wanted:
                    continue  # a full batch: there may be more due right now
                await _wait_any(stop, self._wake, timeout=poll)
                self._wake.clear()
        finally:
            await self._shutdown()

    async def run_once(self) -> int:
        """Claim one batch, deliver it, record it. Returns how many messages were claimed."""
        claimed, _ = await self._cycle(claim=True, record=False)
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        if tasks:
            await asyncio.gather(*tasks)
        await self._cycle(claim=False)
        return claimed

    async def _cycle(self, *, claim: bool, record: bool = True) -> tuple[int, int]:
        """One short write transaction: record what finished, claim what fits.

        Doing both in one transaction keeps the number of round trips per cycle small and
        independent of the batch size, which is what bounds delivery latency under load.
        Returns (claimed, wanted).
        """
        finished = self._finished if record else []
        busy = len(self._jobs) - len(finished)
        wanted = min(self.settings.max_in_flight - busy, self.settings.batch_size) if claim else 0
        wanted = max(wanted, 0)
        if not finished:
            if wanted == 0:
                return 0, 0
            # Idle: a cheap read first, so an idle worker never takes the write lock.
            async with self.db.read() as s:
                if not await repo.due_exists(s, self.clock()):
                    return 0, wanted
        self._finished = [] if record else self._finished
        now = self.clock()
        lease_until = now + dt.timedelta(seconds=self.settings.lease_seconds)
        try:
            async with self.db.write() as s:
                if finished:
                    await self._record(s, finished, now)
                claimed = (
                    await repo.claim_due(
                        s, now=now, limit=wanted, owner=self.worker_id, lease_until=lease_until
                    )
                    if wanted
                    else []
                )
        except BaseException:
            # Nothing recorded: keep them for the next cycle (their leases still hold; if
            # this process dies they are simply delivered again).
            self._finished = finished + self._finished
            raise
        for job in finished:
            if job.outcome is not None:
                self._jobs.pop(job.message.id, None)
                if job.outcome.status == DELIVERED:
                    self.delivered += 1
                self._log_outcome(job)
        for message, endpoint in claimed:
            job = _Job(message, endpoint)
            self._jobs[message.id] = job
            job.task = asyncio.create_task(self._run_job(job), name=f"outbox:{message.id}")
        return len(claimed), wanted

    async def _record(self, s: Any, batch: list[_Job], now: dt.datetime) -> None:
        await repo.write_back(
            s,
            deliveries=[d for job in batch for d in job.deliveries],
            gone_endpoint_ids=[
                job.message.endpoint_id
                for job in batch
                if job.disable_endpoint and job.message.endpoint_id
            ],
            reason_gone=GONE_REASON,
            # Jobs without an outcome were cut short at shutdown: _shutdown releases them.
            outcomes=[
                (job.outcome, job.message.progress) for job in batch if job.outcome is not None
            ],
            owner=self.worker_id,
            now=now,
        )

    async def _run_job(self, job: _Job) -> None:
        budget = max(self.settings.lease_seconds - LEASE_MARGIN_S, 1.0)
        try:
            async with asyncio.timeout(budget):
                if job.message.kind == "webhook":
                    await self._deliver_webhook(job)
                elif job.message.kind == "email":
                    await self._deliver_email(job)
                elif job.message.kind == "calendar":
                    await self._deliver_calendar(job)
                else:
                    job.outcome = self._dead(job, f"unknown message kind {job.message.kind!r}")
        except TimeoutError:
            if job.outcome is None:
                job.outcome = self._failed(job, "delivery did not finish within its lease")
        except Exception as exc:  # a bug or a bad payload must not stop the worker
            log.exception("outbox.delivery_crashed", message_id=job.message.id)
            job.outcome = self._failed(job, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._finished.append(job)
            self._wake.set()

    async def _shutdown(self) -> None:
        """Let in-flight deliveries finish (bounded), record them, release the rest."""
        pending = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.shutdown_grace_seconds)
        unfinished = [j for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for job in unfinished:
            assert job.task is not None
            job.task.cancel()
        if unfinished:
            await asyncio.gather(*(j.task for j in unfinished if j.task), return_exceptions=True)
        for job in unfinished:
            job.outcome = None  # not attempted to the end: release, do not count it
            job.deliveries.clear()
        try:
            await asyncio.shield(self._cycle(claim=False))
        except Exception:
            log.exception("outbox.record_failed_at_shutdown")
        leftover = list(self._jobs)
        if leftover:
            try:
                async with self.db.write() as s:
                    released = await repo.release(
                        s, leftover, owner=self.worker_id, now=self.clock()
                    )
                log.info("outbox.released", count=released, worker=self.worker_id)
            except Exception:
                # Their leases run out by themselves; they are retried then.
                log.exception("outbox.release_failed", count=len(leftover))
            self._jobs.clear()

    # -- outcomes --------------------------------------------------------------------------

    def _failed(
        self,
        job: _Job,
        error: str,
        progress: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> Outcome:
        """A failed attempt: retry on the schedule, or dead after the last attempt.

        ``retry_after``: the receiver asked to be left alone that long (a throttled
        calendar write): the next attempt is no earlier (plus jitter), capped at the
        schedule's longest delay; the schedule stays the floor, and the attempt counts
        as any other."""
        delay = next_attempt_delay(job.message.attempts, self.rng)
        if delay is None:
            return self._dead(job, error, progress)
        delay = retry_delay(retry_after, floor=delay, cap=MAX_RETRY_DELAY_S, rng=self.rng)
        return Outcome(
            message_id=job.message.id,
            status=PENDING,
            next_attempt_at=self.clock() + dt.timedelta(seconds=delay),
            last_error=error,
            progress=progress,
        )

    def _dead(self, job: _Job, error: str, progress: dict[str, Any] | None = None) -> Outcome:
        return Outcome(
            message_id=job.message.id,
            status=DEAD,
            next_attempt_at=self.clock(),
            last_error=error,
            progress=progress,
        )

    def _delivered(
        self, job: _Job, note: str | None = None, progress: dict[str, Any] | None = None
    ) -> Outcome:
        now = self.clock()
        return Outcome(
            message_id=job.message.id,
            status=DELIVERED,
            next_attempt_at=now,
            last_error=note,
            progress=progress,
            delivered_at=now,
        )

    def _log_outcome(self, job: _Job) -> None:
        outcome = job.outcome
        if outcome is None:
            return
        fields = {
            "message_id": job.message.id,
            "kind": job.message.kind,
            "event_type": job.message.event_type,
            "event_id": job.message.event_id,
            "attempt": job.message.attempts,
        }
        if outcome.status == DELIVERED:
            log.debug("outbox.delivered", **fields)
        elif outcome.status == DEAD:
            log.warning("outbox.dead", error=outcome.last_error, **fields)
        else:
            log.info(
                "outbox.retry_scheduled",
                error=outcome.last_error,
                next_attempt_at=outcome.next_attempt_at.isoformat(),
                **fields,
            )

    # -- webhooks ------------------------------------------------------------------------

    async def _deliver_webhook(self, job: _Job) -> None:
        message, endpoint = job.message, job.endpoint
        if endpoint is None or endpoint.deleted_at is not None:
            job.outcome = self._dead(job, "endpoint deleted")
            return
        if not endpoint.enabled:
            job.outcome = self._dead(
                job, f"endpoint disabled ({endpoint.disabled_reason or 'by an operator'})"
            )
            return
        now = self.clock()
        # Inside the job's own budget, so a slow receiver still gets its delivery log row.
        budget = max(self.settings.lease_seconds - LEASE_MARGIN_S - 0.5, 0.5)
        result = await deliver(
            self.http,
            url=endpoint.url,
            secret=signing_secrets(endpoint, now),
            msg_id=message.event_id,
            payload=message.payload,
            now=now,
            total_timeout=min(WEBHOOK_TIMEOUT_S, budget),
        )
        job.deliveries.append(delivery_row(message, endpoint.id, result, attempted_at=now))
        if result.ok:
            job.outcome = self._delivered(job)
        elif result.gone:
            job.disable_endpoint = True
            job.outcome = self._dead(job, GONE_REASON)
        else:
            job.outcome = self._failed(job, describe(result))

    # -- calendar write-back ---------------------------------------------------------------

    async def _deliver_calendar(self, job: _Job) -> None:
        if self.calendar_writer is None:
            job.outcome = self._failed(job, "no calendar writer in this worker")
            return
        final = next_attempt_delay(job.message.attempts, self.rng) is None
        result = await self.calendar_writer.deliver(job.message, final=final)
        if result.status == "delivered":
            job.outcome = self._delivered(job, result.error)
        elif result.status == "dead":
            job.outcome = self._dead(job, result.error or "calendar write failed")
        else:
            job.outcome = self._failed(
                job, result.error or "calendar write failed", retry_after=result.retry_after
            )

    # -- email ---------------------------------------------------------------------------

    async def _deliver_email(self, job: _Job) -> None:
        payload = job.message.payload
        mail = booking_mail(payload["mail"])
        if not mail.organizer_email and not mail.business_email:
            # A business without an email address: the invite still needs an organizer.
            mail = replace(mail, organizer_email=parseaddr(self.email_from)[1] or None)
        kind: EmailKind = payload["kind"]
        messages = build_messages(mail, kind, from_addr=self.email_from, now=self.clock())
        progress: dict[str, Any] = {
            "sent": list(job.message.progress.get("sent", [])),
            "refused": dict(job.message.progress.get("refused", {})),
        }
        temporary: list[str] = []
        try:
            for msg in messages:
                message_id = str(msg["Message-ID"])
                if message_id in progress["sent"] or message_id in progress["refused"]:
                    continue
                try:
                    await self.mailer.send(msg)
                except MailDeliveryError as exc:
                    if exc.permanent:
                        progress["refused"][message_id] = f"{msg['To']}: {exc}"
                    else:
                        temporary.append(f"{msg['To']}: {exc}")
                    continue
                progress["sent"].append(message_id)
        except asyncio.CancelledError:
            # Out of time (the job's budget): keep what was sent, so the retry mails only
            # the recipients still missing. At shutdown this outcome is dropped and the
            # message released instead.
            job.outcome = self._failed(job, "sending did not finish within its lease", progress)
            raise
        job.outcome = self._mail_outcome(job, messages, progress, temporary)

    def _mail_outcome(
        self,
        job: _Job,
        messages: Sequence[EmailMessage],
        progress: dict[str, Any],
        temporary: list[str],
    ) -> Outcome:
        refused = progress["refused"]
        if temporary:
            return self._failed(job, "; ".join(temporary), progress)
        if messages and len(refused) == len(messages):
            return self._dead(
                job, "every recipient refused: " + "; ".join(refused.values()), progress
            )
        note = ("refused: " + "; ".join(refused.values())) if refused else None
        return self._delivered(job, note, progress)


# -- helpers -------------------------------------------------------------------------------


def signing_secrets(endpoint: WebhookEndpoint, now: dt.datetime) -> list[str]:
    """The current secret, plus the previous one while its rotation grace period lasts."""
    secrets = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        secrets.append(endpoint.previous_secret)
    return secrets


def describe(result: DeliveryResult) -> str:
    if result.error is not None:
        return result.error
    return f"receiver answered {result.status_code}"


def delivery_row(
    message: OutboxMessage | None,
    endpoint_id: str,
    result: DeliveryResult,
    *,
    attempted_at: dt.datetime,
    account_id: str | None = None,
    event_id: str | None = None,
    event_type: str | None = None,
) -> WebhookDelivery:
    """The delivery log entry of one attempt (`message` None for a test send)."""
    return WebhookDelivery(
        account_id=message.account_id if message is not None else account_id,
        endpoint_id=endpoint_id,
        outbox_id=message.id if message is not None else None,
        event_id=message.event_id if message is not None else event_id,
        event_type=message.event_type if message is not None else event_type,
        attempt=message.attempts if message is not None else 1,
        succeeded=result.ok,
        status_code=result.status_code,
        error=result.error,
        duration_ms=result.duration_ms,
        response_snippet=result.response_snippet or None,
        attempted_at=attempted_at,
    )


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def booking_mail(snapshot: dict[str, Any]) -> BookingMail:
    """The mail snapshot taken at enqueue time (`services.events.mail_snapshot`)."""
    return BookingMail(
        booking_id=snapshot["booking_id"],
        title=snapshot["title"],
        start=_instant(snapshot["start"]),
        end=_instant(snapshot["end"]),
        business_name=snapshot["business_name"],
        business_email=snapshot["business_email"],
        business_timezone=snapshot["business_timezone"],
        version=int(snapshot["version"]),
        status=snapshot["status"],
        customer_email=snapshot.get("customer_email"),
        customer_name=snapshot.get("customer_name"),
        description=snapshot.get("description"),
        attendees=tuple((email, name) for email, name in snapshot.get("attendees", [])),
        organizer_email=snapshot.get("organizer_email"),
        manage_url=snapshot.get("manage_url"),
    )


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, *, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
