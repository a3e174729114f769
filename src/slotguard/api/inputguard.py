"""What every request must satisfy before any route sees it: the one check of raw input.

A JSON document may nest at most `MAX_DEPTH` levels, a number may be at most
`MAX_NUMBER_CHARS` characters long, and no string (object key or value) may contain a NUL
character; query parameters and form fields may not contain NUL either. The check scans the raw text
iteratively, so it decides on these bounds itself, before any recursive parser (the JSON
decoder, the body fingerprint, pydantic) could hit an interpreter recursion limit or the
integer conversion limit. NUL is refused because PostgreSQL cannot store it in text.

Anything the scan does not understand is left alone: the real parser then reports the
malformed JSON as usual.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

# The deepest body a schema needs is about six levels (rules → working_hours → days).
MAX_DEPTH = 32
# Far beyond any number a field accepts, far below the 4300-digit integer conversion limit.
MAX_NUMBER_CHARS = 100

_TOKEN = re.compile(
    rb'"[^"\\]*(?:\\.[^"\\]*)*"'  # a string (escapes included)
    rb"|[\[\]{}:,]"
    rb"|-?[0-9][0-9.eE+-]*"  # a number (loosely: the parser judges its form)
    rb"|[^\s\"\[\]{}:,]+"  # anything else: literals or garbage
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason to refuse the input, worded like a validation error of §9."""

    field: str
    location: str
    type: str
    message: str

    def as_field(self) -> dict[str, str]:
        return {
            "field": self.field,
            "location": self.location,
            "type": self.type,
            "message": self.message,
        }


def _has_nul(token: bytes) -> bool:
    if b"\x00" in token:
        return True
    if b"\\u" not in token:
        return False
    try:
        text = json.loads(token)  # one flat string: no nesting, no recursion
    except ValueError:
        return False
    return isinstance(text, str) and "\x00" in text


def _key_text(token: bytes) -> str:
    try:
        text = json.loads(token)
    except ValueError:
        return token.decode("utf-8", "replace")
    return str(text)


def check_json(raw: bytes | str, *, location: str = "body") -> Problem | None:
    """The first problem of a JSON text, or None (also None for text that is not JSON)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # One entry per open container: the key or index being filled, None before the first.
    path: list[str | int | None] = []
    in_object: list[bool] = []
    expecting_key = False

    def where() -> str:
        return ".".join(str(p) for p in path if p is not None)

    for match in _TOKEN.finditer(data):
        token = match.group()
        first = token[:1]
        if first in (b"[", b"{"):
            if len(path) >= MAX_DEPTH:
                return Problem(
                    where(),
                    location,
                    "json_too_deep",
                    f"JSON nested more than {MAX_DEPTH} levels deep",
                )
            path.append(0 if first == b"[" else None)
            in_object.append(first == b"{")
            expecting_key = first == b"{"
        elif first in (b"]", b"}"):
            if path:
                path.pop()
                in_object.pop()
            expecting_key = False
        elif first == b",":
            if in_object and in_object[-1]:
                expecting_key = True
            elif path and isinstance(path[-1], int):
                path[-1] += 1
        elif first == b":":
            expecting_key = False
        elif first == b'"':
            if expecting_key and in_object and in_object[-1]:
                path[-1] = _key_text(token)
                if _has_nul(token):
                    return Problem(
                        ".".join(str(p) for p in path[:-1] if p is not None),
                        location,
                        "string_nul",
                        "must not contain NUL characters",
                    )
            elif _has_nul(token):
                return Problem(where(), location, "string_nul", "must not contain NUL characters")
        elif (first == b"-" or first.isdigit()) and len(token) > MAX_NUMBER_CHARS:
            return Problem(
                where(),
                location,
                "json_number_too_long",
                f"a number may have at most {MAX_NUMBER_CHARS} characters",
            )
    return None


def check_query(query_string: bytes, *, location: str = "query") -> Problem | None:
    """A parameter (name or value) of URL-encoded text holding NUL, or None."""
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None
    for name, value in parse_qsl(
        query_string.decode("latin-1"), keep_blank_values=True, encoding="utf-8"
    ):
        if "\x00" in name or "\x00" in value:
            return Problem(
                name.replace("\x00", ""),
                location,
                "string_nul",
                "must not contain NUL characters",
            )
    return None


def check_body(body: bytes, content_type: str | None) -> Problem | None:
    """The first problem of a request body: forms as forms, anything else as JSON.

    Multipart bodies are left to their own parser (no route of the API takes one).
    """
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return check_query(body, location="body")
    if kind == "multipart/form-data":
        return None
    return check_json(body)
