"""A failed statement never carries its bound parameters into a message (and so a log)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Store


@pytest.mark.parametrize("engine", ["write", "read"])
async def test_failed_statement_hides_bound_parameters(store: Store, engine: str) -> None:
    secret = f"whsec_{uuid.uuid4().hex}"
    session = store.db.write() if engine == "write" else store.db.read()
    with pytest.raises(DBAPIError) as caught:
        async with session as s:
            await s.execute(
                text("INSERT INTO no_such_table (secret) VALUES (:secret)"), {"secret": secret}
            )
    message = str(caught.value)
    assert "no_such_table" in message  # the statement itself is still there to debug
    assert secret not in message
    assert secret not in repr(caught.value)
