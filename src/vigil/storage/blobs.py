"""Content-addressed files (enrolment photos, later snapshots) under the data directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from vigil.core import crypto
from vigil.core.errors import NotFoundError


class BlobStore:
    """Files named by the sha256 of their content: ``root/ab/cdef...``.

    Writes are atomic (temporary file, fsync, rename); writing existing content is a no-op.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` (sealed when encryption at rest is on); return the sha256 of the plain bytes."""
        digest = hashlib.sha256(data).hexdigest()
        data = crypto.seal(data)
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        try:
            return crypto.unseal(self.path(sha256).read_bytes())
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {sha256} is missing from {self.root}") from exc

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def delete(self, sha256: str) -> bool:
        """Remove the file; True if it existed."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
