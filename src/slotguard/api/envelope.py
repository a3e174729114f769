"""Response bodies: the success envelope and the error body of §1.1."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel

request_id_var: ContextVar[str] = ContextVar("request_id", default="req_unknown")

JSON = "application/json"


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON. orjson renders the same bytes as the stdlib's compact form for
    the bodies we build, several times faster; anything it refuses (integers beyond 64 bits,
    non-string keys) goes through the stdlib as before."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", exclude_none=False)
    if isinstance(data, list):
        return [_plain(x) for x in data]
    return data


def ok(
    data: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Response:
    body = {"data": _plain(data), "meta": {"request_id": request_id_var.get(), **(meta or {})}}
    return Response(dumps(body), status_code=status, headers=dict(headers or {}), media_type=JSON)


def page(items: list[Any], *, next_cursor: str | None) -> Response:
    meta: dict[str, Any] = {"has_more": next_cursor is not None}
    if next_cursor is not None:
        meta["next_cursor"] = next_cursor
    return ok(items, meta=meta)


def error_body(
    status: int,
    error: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": error,
        "message": message,
        "code": status,
        "request_id": request_id_var.get(),
        "details": dict(details or {}),
    }
    if extra:
        body.update(extra)
    return body


def error(
    status: int,
    error: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    return Response(
        dumps(error_body(status, error, message, details, extra)),
        status_code=status,
        headers=dict(headers or {}),
        media_type=JSON,
    )
