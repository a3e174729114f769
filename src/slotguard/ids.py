"""Prefixed, sortable, opaque identifiers (`bk_01J…`)."""

from __future__ import annotations

from typing import Literal

from ulid import ULID

Prefix = Literal[
    "acct",
    "biz",
    "mc",
    "agt",
    "key",
    "hld",
    "bk",
    "corr",
    "aud",
    "whe",
    "evt",
    "req",
    "busy",
    "cal",
    "obx",
    "bpg",
]


def new_id(prefix: Prefix) -> str:
    # ULIDs sort by creation time, which gives cursors and audit rows a stable order.
    return f"{prefix}_{str(ULID()).lower()}"
