"""Protection at rest (optional): photos, crops, templates and index files encrypted with one key.

Set ``VIGIL_ENCRYPTION_KEY`` to a Fernet key (``vigil encryption new-key`` prints one). Fernet is
AES-128-CBC with an HMAC-SHA256 (``cryptography``): a file or a template changed on disk fails to
decrypt instead of being read wrong. With the key set, everything written from then on is encrypted;
what was written before stays readable (it is recognised as plain). **Losing the key loses every
encrypted photo, crop and template**: keep it in a secret store and a backup apart from the data
(see docs/governance.md).

The process has one active cipher, set when the application context is made from its settings
(:func:`configure`); the catalog's template columns use it through :class:`EncryptedBytes`.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

from vigil.core.errors import ConfigError

MAGIC = b"VGLENC1:"
"""Prefix of every encrypted value (a Fernet token follows)."""


class Cipher:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "VIGIL_ENCRYPTION_KEY is not a valid key (32 url-safe base64-encoded bytes)",
                hint="make one with `vigil encryption new-key`",
            ) from exc

    def encrypt(self, data: bytes) -> bytes:
        return MAGIC + self._fernet.encrypt(data)

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self._fernet.decrypt(data[len(MAGIC) :])
        except InvalidToken:
            raise ConfigError(
                "encrypted data does not open with VIGIL_ENCRYPTION_KEY (another key, or altered data)",
                hint="set the key this data was written with",
            ) from None


_active: Cipher | None = None


def configure(key: str | None) -> None:
    """Make ``key`` (None: no encryption) the process's cipher."""
    global _active
    _active = Cipher(key) if key else None


def active() -> Cipher | None:
    return _active


def is_encrypted(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def seal(data: bytes) -> bytes:
    """``data`` encrypted with the active key, or unchanged when encryption is off."""
    return _active.encrypt(data) if _active is not None else data


def unseal(data: bytes) -> bytes:
    """The plain bytes of ``data`` (encrypted or not)."""
    if not is_encrypted(data):
        return data
    if _active is None:
        raise ConfigError(
            "this data is encrypted and no key is set",
            hint="set VIGIL_ENCRYPTION_KEY to the key it was written with",
        )
    return _active.decrypt(data)


def new_key() -> str:
    return Fernet.generate_key().decode()


class EncryptedBytes(TypeDecorator[bytes]):
    """A binary column sealed with the active key on write and opened on read."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Any) -> bytes | None:
        return None if value is None else seal(value)

    def process_result_value(self, value: bytes | None, dialect: Any) -> bytes | None:
        return None if value is None else unseal(value)
