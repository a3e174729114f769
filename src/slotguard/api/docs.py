"""Response shapes for the OpenAPI document.

Routes build their responses by hand (envelope.ok/page, byte-exact for idempotent replay),
so FastAPI cannot infer what they return; these models describe it for /docs and
/openapi.json.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Meta(BaseModel):
    request_id: str = Field(description="Equal to the X-Request-Id header")


class PageMeta(Meta):
    has_more: bool
    next_cursor: str | None = Field(default=None, description="Absent on the last page")


class Envelope(BaseModel, Generic[T]):
    data: T
    meta: Meta


class Page(BaseModel, Generic[T]):
    data: list[T]
    meta: PageMeta


class Deleted(BaseModel):
    id: str
    deleted: bool


class ErrorBody(BaseModel):
    """The error body of every failure (§1.1); clients branch on `error`."""

    error: str = Field(description="Stable lower_snake code, see the error table")
    message: str
    code: int = Field(description="The HTTP status")
    request_id: str
    details: dict[str, Any]


ERRORS: dict[int | str, dict[str, Any]] = {"4XX": {"model": ErrorBody}}


def one(model: Any, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route answering one object."""
    return {status: {"model": Envelope[model]}, **ERRORS}


def many(model: Any) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route answering a page of objects."""
    return {200: {"model": Page[model]}, **ERRORS}
