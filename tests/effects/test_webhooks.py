"""Webhook signing, delivery against a real local HTTP receiver, retry schedule, netguard."""

from __future__ import annotations

import base64
import json
import random
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import ip_address
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from slotguard.effects.netguard import (
    IPAddress,
    VettedNetworkBackend,
    WebhookTargetError,
    forbidden_reason,
    is_forbidden_address,
    make_webhook_client,
    validate_webhook_url,
)
from slotguard.effects.webhooks import (
    MAX_ATTEMPTS,
    RESPONSE_SNIPPET_BYTES,
    RETRY_SCHEDULE,
    build_event,
    deliver,
    new_secret,
    next_attempt_delay,
)

from .conftest import HttpReceiver, SelfSignedCert, free_port

PUBLIC_IP = "93.184.215.14"


def sample_payload() -> dict[str, Any]:
    return build_event(
        "booking.confirmed",
        "evt_01JTEST",
        datetime(2026, 4, 1, 9, 0, 0, 123456, tzinfo=UTC),
        {"id": "bk_01JTEST", "title": "Intro call ☕", "start_time": "2026-04-01T09:00:00Z"},
    )


def static_resolver(*addresses: str) -> Any:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ip_address(a) for a in addresses]

    return resolve


async def send(receiver_url: str, secret: str, **client_kwargs: Any) -> Any:
    client_kwargs.setdefault("allow_private", True)
    async with make_webhook_client(**client_kwargs) as client:
        return await deliver(
            client,
            url=receiver_url,
            secret=secret,
            msg_id="evt_01JTEST",
            payload=sample_payload(),
            now=datetime.now(UTC),
        )


# --- secrets, payloads ----------------------------------------------------------------------


def test_new_secret_is_standard_webhooks_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    assert new_secret() != secret
    Webhook(secret)  # the reference library accepts it


def test_build_event_renders_created_at_in_utc() -> None:
    berlin = timezone(timedelta(hours=2))
    event = build_event("booking.created", "evt_1", datetime(2026, 4, 1, 11, 0, tzinfo=berlin), {})
    assert event == {
        "type": "booking.created",
        "id": "evt_1",
        "created_at": "2026-04-01T09:00:00Z",
        "data": {},
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        build_event("booking.created", "evt_1", datetime(2026, 4, 1, 9, 0), {})


# --- delivery -------------------------------------------------------------------------------


async def test_delivery_is_signed_and_verifies_with_reference_library(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([200])
    secret = new_secret()

    result = await send(receiver.url(), secret)

    assert result.ok
    assert result.status_code == 200
    assert not result.gone
    assert result.error is None
    assert result.response_snippet == "ok"
    assert result.duration_ms >= 0
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.target == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "evt_01JTEST"
    assert request.headers["webhook-signature"].startswith("v1,")
    verified = Webhook(secret).verify(request.body, request.headers)
    assert verified == sample_payload()
    assert verified["created_at"] == "2026-04-01T09:00:00Z"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


async def test_server_error_then_success_keeps_the_message_id(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([500, 200])
    secret = new_secret()

    first = await send(receiver.url(), secret)
    second = await send(receiver.url(), secret)

    assert (first.ok, first.status_code, first.gone, first.error) == (False, 500, False, None)
    assert (second.ok, second.status_code) == (True, 200)
    assert [r.headers["webhook-id"] for r in receiver.requests] == ["evt_01JTEST"] * 2
    for request in receiver.requests:
        Webhook(secret).verify(request.body, request.headers)


async def test_410_means_gone(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([(410, b"endpoint removed")])
    result = await send(receiver.url(), new_secret())
    assert (result.ok, result.status_code, result.gone) == (False, 410, True)
    assert result.response_snippet == "endpoint removed"


async def test_redirects_are_not_followed(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver(
        [(307, b"", {"Location": "http://169.254.169.254/latest/meta-data"})]
    )
    result = await send(receiver.url(), new_secret())
    assert (result.ok, result.status_code, result.error) == (False, 307, None)
    assert len(receiver.requests) == 1


async def test_response_snippet_is_truncated(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([(200, b"x" * 50_000)])
    result = await send(receiver.url(), new_secret())
    assert result.ok
    assert result.response_snippet == "x" * RESPONSE_SNIPPET_BYTES


async def test_timeout_is_a_result_not_an_exception(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver(["hang"])
    started = time.perf_counter()
    result = await send(receiver.url(), new_secret(), timeout=0.3)
    assert time.perf_counter() - started < 3
    assert not result.ok
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("timeout")
    assert len(receiver.requests) == 1


async def test_total_timeout_bounds_the_attempt(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver(["hang"])
    async with make_webhook_client(allow_private=True, timeout=10) as client:
        result = await deliver(
            client,
            url=receiver.url(),
            secret=new_secret(),
            msg_id="evt_1",
            payload={},
            now=datetime.now(UTC),
            total_timeout=0.3,
        )
    assert result.error is not None
    assert result.error.startswith("timeout")


async def test_connection_refused_is_a_result() -> None:
    result = await send(f"http://127.0.0.1:{free_port()}/hook", new_secret())
    assert not result.ok
    assert result.status_code is None
    assert not result.blocked
    assert result.error is not None
    assert "ConnectError" in result.error


async def test_invalid_url_is_a_result() -> None:
    result = await send("http://exa mple.com/", new_secret())
    assert not result.ok
    assert result.error


# --- retry schedule -------------------------------------------------------------------------


def test_retry_schedule() -> None:
    assert RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert MAX_ATTEMPTS == 8
    rng = random.Random(4)
    assert next_attempt_delay(0, rng) == 0
    for attempt in range(1, MAX_ATTEMPTS):
        base = RETRY_SCHEDULE[attempt]
        delays = [next_attempt_delay(attempt, rng) for _ in range(200)]
        assert all(d is not None and base * 0.9 <= d <= base * 1.1 for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert next_attempt_delay(MAX_ATTEMPTS, rng) is None
    assert next_attempt_delay(MAX_ATTEMPTS + 3, rng) is None
    with pytest.raises(ValueError, match=">= 0"):
        next_attempt_delay(-1, rng)


# --- netguard: addresses --------------------------------------------------------------------

FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.10.1", "link-local"),
    ("fd00:ec2::254", "cloud metadata"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "private"),  # reserved 240/4: Python files it under is_private too
    ("255.255.255.255", "private"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.254", "shared address space (CGNAT)"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside"),
    ("::ffff:169.254.169.254", "cloud metadata (IPv4 169.254.169.254 inside"),
    ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 inside"),
    ("64:ff9b::a00:1", "private (IPv4 10.0.0.1 inside"),
    ("2002:7f00:1::1", "loopback (IPv4 127.0.0.1 inside"),
    ("::7f00:1", "reserved"),  # deprecated IPv4-compatible form
    ("192.0.2.10", "private"),  # documentation
    ("2001:db8::1", "private"),  # documentation
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    PUBLIC_IP,
    "100.128.0.1",  # just outside CGNAT
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_forbidden_addresses(address: str, reason: str) -> None:
    ip = ip_address(address)
    assert is_forbidden_address(ip)
    found = forbidden_reason(ip)
    assert found is not None
    assert found.startswith(reason)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden_address(ip_address(address))
    assert forbidden_reason(ip_address(address)) is None


# --- netguard: URLs at endpoint create time -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("example.com/hook", "scheme must be http or https"),
        ("https:///hook", "must include a host"),
        ("http://exa mple.com/hook", "not a valid host name"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://10.0.0.8/hook", "private"),
        ("http://100.64.1.1/hook", "CGNAT"),
        ("http://localhost:8000/hook", "loopback"),  # a name: resolved, then checked
        ("http://2130706433/hook", "loopback"),  # 127.0.0.1 in decimal, resolved by libc
        ("http://127.1/hook", "loopback"),
    ],
)
async def test_validate_webhook_url_refuses(url: str, message: str) -> None:
    with pytest.raises(WebhookTargetError, match=message):
        await validate_webhook_url(url, allow_private=False)


async def test_validate_webhook_url_accepts_public_targets() -> None:
    await validate_webhook_url(f"https://{PUBLIC_IP}/hook", allow_private=False)
    await validate_webhook_url(
        "https://hooks.example.com/in",
        allow_private=False,
        resolver=static_resolver(PUBLIC_IP, "2606:4700:4700::1111"),
    )


async def test_validate_webhook_url_checks_every_resolved_address() -> None:
    with pytest.raises(WebhookTargetError, match=r"hooks\.example\.com \(10\.0\.0\.7\)"):
        await validate_webhook_url(
            "https://hooks.example.com/in",
            allow_private=False,
            resolver=static_resolver(PUBLIC_IP, "10.0.0.7"),
        )


async def test_validate_webhook_url_unresolvable_host() -> None:
    async def fail(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(WebhookTargetError, match="could not be resolved"):
        await validate_webhook_url("https://nowhere.invalid/", allow_private=False, resolver=fail)


async def test_validate_webhook_url_allow_private_keeps_shape_checks() -> None:
    await validate_webhook_url("http://127.0.0.1:8000/hook", allow_private=True)
    await validate_webhook_url("http://localhost/hook", allow_private=True)
    with pytest.raises(WebhookTargetError, match="scheme"):
        await validate_webhook_url("gopher://127.0.0.1/", allow_private=True)


def test_webhook_target_error_is_a_value_error() -> None:
    assert issubclass(WebhookTargetError, ValueError)


# --- netguard: connect time -----------------------------------------------------------------


async def test_guarded_client_refuses_loopback_receiver(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([200])
    result = await send(receiver.url(), new_secret(), allow_private=False)
    assert not result.ok
    assert result.blocked
    assert result.status_code is None
    assert result.error is not None
    assert "loopback" in result.error
    assert receiver.connections == 0

    reached = await send(receiver.url(), new_secret(), allow_private=True)
    assert reached.ok
    assert receiver.connections == 1


async def test_hostname_resolving_to_loopback_is_refused_at_connect(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([200])
    # deliver() does no URL pre-check: the refusal comes from the connection itself.
    result = await send(receiver.url(host="localhost"), new_secret(), allow_private=False)
    assert result.blocked
    assert result.error is not None
    assert "localhost" in result.error
    assert receiver.connections == 0

    backend = VettedNetworkBackend(allow_private=False)
    with pytest.raises(WebhookTargetError, match="loopback"):
        await backend.connect_tcp("localhost", receiver.port, timeout=1)


async def test_dns_rebinding_is_caught_at_connect_time(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([200])
    url = receiver.url(host="hooks.example.com")
    # At create time the name pointed to a public address ...
    await validate_webhook_url(url, allow_private=False, resolver=static_resolver(PUBLIC_IP))
    # ... at delivery time it points at the server itself.
    rebound = static_resolver("127.0.0.1")
    result = await send(url, new_secret(), allow_private=False, resolver=rebound)
    assert result.blocked
    assert receiver.connections == 0


async def test_connects_to_vetted_ip_and_keeps_host_header(http_receiver: Any) -> None:
    receiver: HttpReceiver = await http_receiver([200])
    url = receiver.url(host="hooks.example.com")
    # ::1 first: nothing listens there, so the next vetted address is tried.
    resolver = static_resolver("::1", "127.0.0.1")
    result = await send(url, new_secret(), allow_private=True, resolver=resolver)
    assert result.ok, result.error
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.example.com:{receiver.port}"


async def test_tls_uses_hostname_for_sni_and_verification(
    http_receiver: Any, test_cert: SelfSignedCert
) -> None:
    receiver: HttpReceiver = await http_receiver([200], ssl_context=test_cert.server_context())
    url = receiver.url(host="localhost")
    result = await send(url, new_secret(), verify=test_cert.client_context())
    assert result.ok, result.error
    assert receiver.sni == ["localhost"]
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"

    # The cert is for localhost/127.0.0.1: a name it does not cover fails verification even
    # though the socket goes to the same vetted IP.
    other = receiver.url(host="hooks.example.com")
    failed = await send(
        other,
        new_secret(),
        verify=test_cert.client_context(),
        resolver=static_resolver("127.0.0.1"),
    )
    assert not failed.ok
    assert failed.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in failed.error or "certificate" in failed.error.lower()


def test_payload_body_is_compact_utf8_json() -> None:
    from slotguard.effects.webhooks import encode_payload

    body = encode_payload({"title": "Café", "at": datetime(2026, 4, 1, 9, tzinfo=UTC)})
    assert body == '{"title":"Café","at":"2026-04-01T09:00:00Z"}'
    assert json.loads(body)["title"] == "Café"
