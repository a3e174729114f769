"""Verifying slotguard's webhooks in a receiver (API.md §8: Standard Webhooks signatures).

::

    from slotguard.webhooks import WebhookVerificationError, verify

    @app.post("/hooks/slotguard")
    async def receive(request: Request) -> Response:
        try:
            event = verify(await request.body(), request.headers, secret=SECRET)
        except WebhookVerificationError:
            return Response(status_code=400)
        if seen(event.id):  # delivery is at least once: dedupe on the event id
            return Response(status_code=200)
        handle(event.type, event.data)
        return Response(status_code=200)

Pass the raw request body (bytes as received, not re-serialised JSON). During a secret
rotation pass both secrets (``secret=[new, old]``): a delivery signed with either verifies.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks import Webhook

from slotguard.client._models import TypedObject

DEFAULT_TOLERANCE = dt.timedelta(minutes=5)


class WebhookVerificationError(Exception):
    """The delivery is not authentic, is malformed, or its timestamp is out of tolerance."""


class WebhookEvent(TypedObject):
    """A verified event: ``{type, id, created_at, data}``; ``id`` equals ``webhook-id``."""

    __slots__ = ()

    type: str
    id: str
    created_at: dt.datetime
    data: dict[str, Any]


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: dt.timedelta = DEFAULT_TOLERANCE,
    now: dt.datetime | None = None,
) -> WebhookEvent:
    """Check the ``webhook-id``/``-timestamp``/``-signature`` headers and parse the event.

    Raises ``WebhookVerificationError`` when no secret matches, a header is missing or
    malformed, or the timestamp is further than ``tolerance`` from ``now`` (replay guard).
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("at least one secret is needed")
    try:
        body = payload.decode() if isinstance(payload, bytes) else payload
    except UnicodeDecodeError:
        raise WebhookVerificationError("the payload is not UTF-8") from None
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent = dt.datetime.fromtimestamp(int(stamp), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookVerificationError("webhook-timestamp is not a Unix time") from None
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - sent) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    for candidate in secrets:
        try:
            expected = Webhook(candidate).sign(msg_id=msg_id, timestamp=sent, data=body)
        except Exception as exc:  # the library raises several types for a malformed secret
            raise ValueError(f"not a usable webhook secret: {type(exc).__name__}") from None
        if _matches(expected, signatures):
            break
    else:
        raise WebhookVerificationError("no signature matches the secret")
    try:
        event = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the payload is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("the payload is not a JSON object")
    return WebhookEvent(event)


def _matches(expected: str, header: str) -> bool:
    want = expected.encode()
    # Several space-separated `v1,<base64>` values during a rotation; compare each in
    # constant time, ignoring versions other than v1.
    return any(
        hmac.compare_digest(want, part.encode())
        for part in header.split()
        if part.startswith("v1,")
    )


__all__ = ["DEFAULT_TOLERANCE", "WebhookEvent", "WebhookVerificationError", "verify"]
