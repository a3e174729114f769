"""Health, readiness, metrics, OpenAPI and request ids (§1.1, §10)."""

from __future__ import annotations

import json

from tests.conftest import Tenant


async def test_health_ready_metrics_docs(tenant: Tenant) -> None:
    c = tenant.client
    r = await c.get("/healthz")
    assert r.status_code == 200 and r.json()["data"] == {"status": "ok"}
    assert r.headers["X-Request-Id"] == r.json()["meta"]["request_id"]
    r = await c.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == "ready" and r.json()["data"]["revision"]
    await c.get("/v1/businesses", headers=tenant.headers())
    r = await c.get("/metrics")
    assert r.status_code == 200
    assert 'slotguard_http_requests_total{method="GET",route="/v1/businesses",status="200"}' in (
        r.text
    )
    r = await c.get("/openapi.json")
    spec = r.json()
    for path in (
        "/v1/bookings",
        "/v1/availability",
        "/v1/availability/slots",
        "/v1/bookings/{hold_id}/confirm",
        "/v1/holds/{hold_id}",
        "/v1/audit-log",
        "/v1/agents",
        "/v1/webhook-endpoints",
    ):
        assert path in spec["paths"], path
    created = spec["paths"]["/v1/bookings"]["post"]["responses"]
    assert created["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "Envelope_BookingRead_"
    )
    assert "ErrorBody" in created["4XX"]["content"]["application/json"]["schema"]["$ref"]
    listed = spec["paths"]["/v1/bookings"]["get"]["responses"]["200"]
    assert listed["content"]["application/json"]["schema"]["$ref"].endswith("Page_BookingRead_")
    assert (await c.get("/docs")).status_code == 200


async def test_request_ids_are_unique_and_prefixed(tenant: Tenant) -> None:
    ids = set()
    for _ in range(5):
        r = await tenant.client.get("/v1/businesses", headers=tenant.headers())
        ids.add(r.headers["X-Request-Id"])
    assert len(ids) == 5 and all(i.startswith("req_") for i in ids)


async def test_unexpected_failure_is_500_without_stack_trace(tenant: Tenant) -> None:
    """A bug (here: a route that raises) answers 500 internal_error with a request id."""
    app = tenant.client._transport.app  # type: ignore[attr-defined]

    async def boom() -> None:
        raise RuntimeError("secret detail")

    app.add_api_route("/v1/_boom_for_test", boom)
    try:
        r = await tenant.client.get("/v1/_boom_for_test")
    finally:
        app.router.routes[:] = [
            route
            for route in app.router.routes
            if getattr(route, "path", "") != "/v1/_boom_for_test"
        ]
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "internal_error" and body["code"] == 500
    assert body["request_id"] == r.headers["X-Request-Id"]
    assert "secret detail" not in json.dumps(body)


def test_exception_logs_carry_no_local_variables() -> None:
    """A traceback in the log must not leak what a frame held (headers with API keys)."""
    import io

    import structlog

    from slotguard.logs import processors

    buf = io.StringIO()
    log = structlog.wrap_logger(structlog.PrintLogger(buf), processors=processors())

    def handler(authorization: str = "Bearer sg_live_not_for_logs") -> None:
        raise RuntimeError("boom")

    try:
        handler()
    except RuntimeError:
        log.error("unhandled_error", exc_info=True)
    line = json.loads(buf.getvalue())
    assert line["exception"][0]["exc_type"] == "RuntimeError"
    assert "sg_live_not_for_logs" not in buf.getvalue()
