"""One place that turns every failure into the §1.1 error body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from slotguard.api import envelope
from slotguard.api.methods import allowed_methods
from slotguard.domain.errors import DomainError

log = structlog.get_logger("slotguard.api")


class ApiError(Exception):
    """A failure of the HTTP layer itself (auth, headers, limits)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = dict(details or {})
        self.headers = dict(headers or {})


def unauthorized(message: str = "A valid API key is required.") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def validation_fields(errors: list[Any]) -> list[dict[str, Any]]:
    fields = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        location = loc[0] if loc and loc[0] in ("body", "query", "path", "header") else None
        name = ".".join(loc[1:] if location else loc) or (location or "")
        kind = err.get("type", "")
        message = "Malformed JSON body." if kind == "json_invalid" else err.get("msg", "invalid")
        entry: dict[str, Any] = {"field": name, "message": message, "type": kind}
        if location:
            entry["location"] = location
        fields.append(entry)
    return fields


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> Response:
        return envelope.error(exc.status, exc.code, exc.message, exc.details, extra=exc.extra)

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> Response:
        return envelope.error(exc.status, exc.code, exc.message, exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        fields = validation_fields(list(exc.errors()))
        malformed = any(f["type"] == "json_invalid" for f in fields)
        message = (
            "The request body is not valid JSON." if malformed else "The request is not valid."
        )
        return envelope.error(422, "validation_error", message, {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
        headers = dict(exc.headers or {})
        if status == 404:
            message = "No such route."
        elif status == 405:
            message = "Method not allowed on this route."
            headers["Allow"] = ", ".join(allowed_methods(request))
        else:
            message = str(exc.detail)
        return envelope.error(status, code, message, headers=headers)
