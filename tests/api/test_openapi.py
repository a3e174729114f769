"""The OpenAPI document matches what the server does (§1.4-1.6) and stays valid OpenAPI 3.1;
HTTP methods: HEAD on every GET resource, and a complete `Allow` on 405."""

from __future__ import annotations

from typing import Any

import jsonschema
import schemathesis

from tests.api.helpers import ALL_DAYS, key, make_business
from tests.api.test_errors import assert_error
from tests.conftest import Tenant

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
REQUIRED_IDEMPOTENCY = {
    ("post", "/v1/bookings"),
    ("post", "/v1/bookings/{hold_id}/confirm"),
    ("post", "/v1/bookings/{booking_id}/cancel"),
    ("post", "/v1/bookings/{booking_id}/reschedule"),
    ("patch", "/v1/bookings/{booking_id}"),
}


async def spec(t: Tenant) -> dict[str, Any]:
    r = await t.client.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def header(op: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = [p for p in op.get("parameters", []) if p["in"] == "header" and p["name"] == name]
    return found[0] if found else None


async def test_document_is_valid_openapi_3_1(tenant: Tenant) -> None:
    doc = await spec(tenant)
    assert doc["openapi"].startswith("3.1.")
    # The official OpenAPI 3.1 schema (as bundled by schemathesis), then every schema object
    # against JSON Schema 2020-12, which the OpenAPI schema itself leaves unchecked.
    schemathesis.openapi.from_dict(doc).validate()
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name


async def test_bearer_scheme_declared_and_required_everywhere(tenant: Tenant) -> None:
    doc = await spec(tenant)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["type"] == "http"
    assert schemes["bearerAuth"]["scheme"].lower() == "bearer"
    # The OAuth callback is where a provider sends the owner's browser back: it carries no
    # key (the `state` parameter authenticates it), and the document says so.
    public = {("get", "/v1/oauth/{provider}/callback")}
    for method, path, op in operations(doc):
        secured = {"bearerAuth": []} in op.get("security", [])
        assert secured is ((method, path) not in public), (method, path)


async def test_idempotency_key_and_if_match_are_declared(tenant: Tenant) -> None:
    doc = await spec(tenant)
    required, optional = set(), set()
    for method, path, op in operations(doc):
        idem = header(op, "Idempotency-Key")
        if idem is None:
            continue
        assert method in ("post", "patch", "put", "delete"), (method, path)
        assert idem["schema"]["maxLength"] == 255
        (required if idem["required"] else optional).add((method, path))
    assert required == REQUIRED_IDEMPOTENCY
    assert ("post", "/v1/availability") in optional
    assert ("delete", "/v1/agents/{agent_id}") in optional
    paths = doc["paths"]
    assert header(paths["/v1/bookings/{booking_id}"]["patch"], "If-Match")["required"] is True  # type: ignore[index]
    for action in ("cancel", "reschedule"):
        op = paths[f"/v1/bookings/{{booking_id}}/{action}"]["post"]
        assert header(op, "If-Match")["required"] is False  # type: ignore[index]


async def test_every_operation_documents_its_errors_with_the_error_body(tenant: Tenant) -> None:
    doc = await spec(tenant)
    for method, path, op in operations(doc):
        responses = op["responses"]
        assert "4XX" in responses, (method, path)  # 400, 401, 403, 404, 409, 422, 429 ...
        schema = responses["4XX"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
        assert "422" not in responses, (method, path)  # FastAPI's own 422 shape is never sent
    assert "HTTPValidationError" not in doc["components"]["schemas"]


async def test_delete_agent_documents_what_it_returns(tenant: Tenant) -> None:
    doc = await spec(tenant)
    documented = doc["paths"]["/v1/agents/{agent_id}"]["delete"]["responses"]["200"]
    ref = documented["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    props = doc["components"]["schemas"][ref]["properties"]["data"]
    data_schema = doc["components"]["schemas"][props["$ref"].split("/")[-1]]
    r = await tenant.client.post(
        "/v1/agents",
        json={"name": "bot", "scopes": ["bookings:read"], "allowed_business_ids": "*"},
        headers=tenant.headers(),
    )
    assert r.status_code == 201, r.text
    agent_id = r.json()["data"]["id"]
    r = await tenant.client.delete(f"/v1/agents/{agent_id}", headers=tenant.headers())
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json()["data"], data_schema)
    assert set(r.json()["data"]) == set(data_schema["properties"])
    webhook_delete = doc["paths"]["/v1/webhook-endpoints/{endpoint_id}"]["delete"]["responses"]
    assert (
        webhook_delete["200"]["content"]["application/json"]["schema"]["$ref"]
        == (documented["content"]["application/json"]["schema"]["$ref"])
    )


async def test_audit_export_is_documented_as_json_lines(tenant: Tenant) -> None:
    doc = await spec(tenant)
    content = doc["paths"]["/v1/audit-log/export"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["application/x-ndjson"]
    await make_business(tenant)
    r = await tenant.client.get("/v1/audit-log/export", headers=tenant.headers())
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/x-ndjson"


async def test_405_allow_lists_every_method_of_the_path(tenant: Tenant) -> None:
    doc = await spec(tenant)
    c, h = tenant.client, tenant.headers()
    for path, item in doc["paths"].items():
        declared = {m.upper() for m in item if m in METHODS}
        if "GET" in declared:
            declared.add("HEAD")
        concrete = path.replace("{", "x_").replace("}", "")
        unused = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in declared)
        r = await c.request(unused, concrete, headers=h)
        assert_error(r, 405, "method_not_allowed")
        assert {m.strip() for m in r.headers["allow"].split(",")} == declared, path


async def test_head_answers_like_get_without_a_body(tenant: Tenant) -> None:
    biz = await make_business(
        tenant, rules={"working_hours": [{"days": ALL_DAYS, "start": "09:00", "end": "10:00"}]}
    )
    c, h = tenant.client, tenant.headers()
    for path in (
        "/v1/businesses",
        f"/v1/businesses/{biz['id']}",
        f"/v1/businesses/{biz['id']}/rules",
        f"/v1/availability/slots?business_id={biz['id']}",
        "/v1/me",
        "/healthz",
    ):
        get = await c.get(path, headers=h)
        head = await c.head(path, headers=h)
        assert get.status_code == 200, (path, get.text)
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert "x-request-id" in head.headers
    # Unknown resources and missing keys answer HEAD as GET would, without a body.
    assert (await c.head("/v1/businesses/biz_nope", headers=h)).status_code == 404
    assert (await c.head("/v1/businesses")).status_code == 401
    # HEAD never runs a write: a POST-only path is 405 and nothing is created.
    r = await c.head("/v1/bookings/x/confirm", headers={**h, "Idempotency-Key": key()})
    assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_every_answered_content_type_is_documented(tenant: Tenant) -> None:
    # The OAuth callback answers a person's browser with small HTML pages, failures included;
    # the document must say so (a fuzzer checks every answer's content type against it).
    doc = await spec(tenant)
    op = doc["paths"]["/v1/oauth/{provider}/callback"]["get"]
    r = await tenant.client.get("/v1/oauth/nope/callback", params={"state": "x"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "text/html" in op["responses"]["4XX"]["content"]
    # JSON errors of the input guard (before any route) stay documented there too.
    assert "application/json" in op["responses"]["4XX"]["content"]
    r = await tenant.client.get("/v1/oauth/google/callback", params={"state": "a\x00b"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/json")
    # Everywhere else, errors are JSON only.
    for method, path, other in operations(doc):
        if (method, path) != ("get", "/v1/oauth/{provider}/callback"):
            assert set(other["responses"]["4XX"]["content"]) == {"application/json"}, path
