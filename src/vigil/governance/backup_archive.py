"""The backup file's envelope: a tar, sealed in AES-256-GCM chunks when encryption at rest is on.

A plain backup is a tar (``tar tf`` lists it). An encrypted one is ``MAGIC``, a header (format
version, a random 16-byte salt, the chunk size) and the tar in chunks: each chunk is its length
(4 bytes, big-endian) and its AES-256-GCM ciphertext. The archive key is derived from the catalog's
Fernet key (``VIGIL_ENCRYPTION_KEY``) with HKDF-SHA256 and the salt, so each archive has a key of its
own and the nonce can be a counter: 11 bytes of chunk number and one byte that is 1 on the last chunk
only. The header is every chunk's associated data. So a changed byte, a chunk moved, dropped or
replayed, a cut before the last chunk or bytes after it, or another key, all fail to open, and no
chunk is given out before it is authenticated.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vigil.core.errors import ConfigError, InputError

MAGIC = b"VIGILBAK"
VERSION = 1
CHUNK = 1 << 20
_HEADER = struct.Struct(">8sB16sI")  # magic, version, salt, chunk size
_LEN = struct.Struct(">I")
_INFO = b"vigil backup v1: AES-256-GCM archive key"
_TAG = 16


def archive_key(fernet_key: str, salt: bytes) -> bytes:
    """The 32-byte AES key of one archive, from the catalog's Fernet key and the archive's salt."""
    try:
        ikm = base64.urlsafe_b64decode(fernet_key.encode())
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(
            "VIGIL_ENCRYPTION_KEY is not a valid key", hint="set the key the catalog was encrypted with"
        ) from exc
    if len(ikm) != 32:
        raise ConfigError("VIGIL_ENCRYPTION_KEY is not a valid key (32 url-safe base64-encoded bytes)")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO)
    return hkdf.derive(ikm)


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class SealingWriter:
    """A write-only file object: what is written goes to ``sink`` sealed in chunks; :meth:`close`
    writes the last chunk (and does not close ``sink``)."""

    def __init__(self, sink: BinaryIO, fernet_key: str) -> None:
        salt = os.urandom(16)
        self._header = _HEADER.pack(MAGIC, VERSION, salt, CHUNK)
        self._aead = AESGCM(archive_key(fernet_key, salt))
        self._sink = sink
        self._buf = bytearray()
        self._counter = 0
        self._closed = False
        sink.write(self._header)

    def _emit(self, data: bytes, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, final), data, self._header)
        self._sink.write(_LEN.pack(len(sealed)) + sealed)
        self._counter += 1

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) > CHUNK:
            self._emit(bytes(self._buf[:CHUNK]), final=False)
            del self._buf[:CHUNK]
        return len(data)

    def close(self) -> None:
        if not self._closed:
            self._emit(bytes(self._buf), final=True)
            self._buf.clear()
            self._closed = True


class OpeningReader:
    """A read-only file object over a sealed archive: gives the tar back, chunk by authenticated chunk."""

    def __init__(self, source: BinaryIO, header: bytes, fernet_key: str) -> None:
        _, _, salt, chunk = _HEADER.unpack(header)
        self._header = header
        self._max = chunk + _TAG
        self._aead = AESGCM(archive_key(fernet_key, salt))
        self._source = source
        self._buf = b""
        self._counter = 0
        self._done = False

    def _next(self) -> None:
        head = self._source.read(_LEN.size)
        if len(head) < _LEN.size:
            raise InputError("the backup is truncated (it ends before its last chunk)", hint=_WHOLE)
        (n,) = _LEN.unpack(head)
        sealed = self._source.read(n) if n <= self._max else b""
        if n > self._max or len(sealed) < n:
            raise InputError("the backup is truncated or altered (a chunk is cut short)", hint=_WHOLE)
        for final in (False, True):
            try:
                self._buf += self._aead.decrypt(_nonce(self._counter, final), sealed, self._header)
            except InvalidTag:
                continue
            self._counter += 1
            self._done = final
            if final and self._source.read(1):
                raise InputError("the backup has data after its last chunk (altered)", hint=_WHOLE)
            return
        raise InputError(
            "the backup does not open with VIGIL_ENCRYPTION_KEY: another key, or the file was altered",
            hint="set the key of the catalog the backup was made from; otherwise use another copy",
        )

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buf) < size):
            self._next()
        if size < 0:
            size = len(self._buf)
        out, self._buf = self._buf[:size], self._buf[size:]
        return out


_WHOLE = "use a complete copy of the backup (compare its sha256 with the backup_create audit entry)"


def read_header(fh: BinaryIO) -> bytes | None:
    """The encrypted archive's header (``fh`` is left after it), or None for a plain tar (rewound)."""
    start = fh.read(_HEADER.size)
    if start[: len(MAGIC)] != MAGIC:
        fh.seek(0)
        return None
    if len(start) < _HEADER.size:
        raise InputError("the backup is truncated (its header is cut short)", hint=_WHOLE)
    _, version, _, chunk = _HEADER.unpack(start)
    if version != VERSION or not 0 < chunk <= 64 * CHUNK:
        raise InputError(
            f"the backup's format version {version} is not one this vigil reads",
            hint="restore with a newer vigil",
        )
    return start
