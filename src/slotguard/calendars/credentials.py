"""Calendar credentials at rest (§7.4): Fernet tokens keyed from ``SLOTGUARD_SECRET_KEY``.

* Each comma-separated entry is a key: a Fernet key (32 url-safe base64 bytes) is used as
  is; any other text is a passphrase from which a key is derived with HKDF-SHA256 (the
  passphrase should be long and random: HKDF does not slow down guessing).
* The first key encrypts, all keys decrypt (``MultiFernet``), so a key is rotated by
  prepending the new one and running ``slotguard admin rotate-secret-key``.
* Fernet has no associated data, so the calendar id is sealed inside the token and checked
  on decrypt: a token copied onto another calendar's row does not decrypt there.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CredentialError", "SecretBox", "secret_box"]

_INFO = b"slotguard calendar credentials v1"


class CredentialError(Exception):
    """A stored credential does not decrypt with the configured keys, or is not this
    calendar's."""


def _fernet_key(entry: str) -> bytes:
    raw = entry.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32 and len(raw) == 44:
            return raw
    except (binascii.Error, ValueError):
        pass
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(raw)
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    """Encrypts and decrypts one calendar's secrets."""

    def __init__(self, secret_key: str) -> None:
        entries = [e for e in (p.strip() for p in secret_key.split(",")) if e]
        if not entries:
            raise ValueError("SLOTGUARD_SECRET_KEY is empty")
        self._fernet = MultiFernet([Fernet(_fernet_key(e)) for e in entries])

    def seal(self, calendar_id: str, secrets: Mapping[str, Any]) -> str:
        body = json.dumps({"calendar_id": calendar_id, "secrets": dict(secrets)})
        return self._fernet.encrypt(body.encode()).decode()

    def open(self, calendar_id: str, token: str) -> dict[str, Any]:
        try:
            body = json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError) as exc:
            raise CredentialError(
                "stored credentials do not decrypt with SLOTGUARD_SECRET_KEY"
            ) from exc
        if not isinstance(body, dict) or body.get("calendar_id") != calendar_id:
            raise CredentialError("stored credentials belong to another calendar")
        secrets = body.get("secrets")
        return dict(secrets) if isinstance(secrets, dict) else {}

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` with the first key (raises ``CredentialError``)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise CredentialError(
                "stored credentials do not decrypt with SLOTGUARD_SECRET_KEY"
            ) from exc


def secret_box(secret_key: str | None) -> SecretBox | None:
    return SecretBox(secret_key) if secret_key and secret_key.strip() else None
