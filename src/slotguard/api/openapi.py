"""The OpenAPI document: what FastAPI infers, plus the headers it cannot see.

The request headers of §1.5 and §1.6 are read by hand (their errors are specific codes, not a
generic 422), so FastAPI does not know of them. The dependencies that read them carry an
`openapi_parameters` attribute, and the routes that read `If-Match` name it in
`openapi_extra`; this module copies the former into each operation that uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[\\x20-\\x7e]+$",
}


def header(
    name: str, *, required: bool, description: str, schema: dict[str, Any]
) -> dict[str, Any]:
    """One OpenAPI header parameter."""
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": schema,
    }


def if_match(*, required: bool) -> dict[str, Any]:
    """`openapi_extra` of a route that reads If-Match (§1.6)."""
    return {
        "parameters": [
            header(
                "If-Match",
                required=required,
                description='The booking version as an ETag: "3", W/"3", 3, or * for no check'
                + ("" if required else " (optional)"),
                schema={"type": "string", "minLength": 1},
            )
        ]
    }


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def _declared(route: APIRoute) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for sub in _dependants(route.dependant):
        out.extend(getattr(sub.call, "openapi_parameters", ()))
    return out


def _one_error_body(doc: dict[str, Any]) -> None:
    """Every failure has the §1.1 body: each operation documents it for all 4XX statuses,
    never FastAPI's own 422 shape (which slotguard does not send)."""
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            # Also where the success is not JSON (the audit export): errors are JSON, except
            # on a page for a person's browser (the OAuth callback), whose failures are pages
            # too (JSON only from the input guard, which runs before any route).
            content: dict[str, Any] = {"application/json": {"schema": error_ref}}
            ok = responses.get("200", {}).get("content", {})
            if "text/html" in ok:
                content["text/html"] = {}
                responses["502"] = {
                    "description": "The provider could not be reached",
                    "content": {"text/html": {}},
                }
            responses["4XX"] = {"description": "Error (§9 codes)", "content": content}
    schemas = doc.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Serve the completed document; `routers` are the ones the app includes unprefixed."""
    base: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = base()
        _one_error_body(doc)
        for route in (r for router in routers for r in router.routes):
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            extra = _declared(route)
            if not extra:
                continue
            for method in route.methods or ():
                operation = doc["paths"].get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                params = operation.setdefault("parameters", [])
                names = {(p["in"], p["name"].lower()) for p in params}
                params.extend(p for p in extra if ("header", p["name"].lower()) not in names)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
