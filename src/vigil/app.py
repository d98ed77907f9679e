"""The application context: settings, catalog, blobs, indexes and the face engine, made once.

The CLI and (later) the API are thin layers over services that take this context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from vigil.core import crypto
from vigil.core.config import Settings
from vigil.storage.ann import IndexPolicy
from vigil.storage.blobs import BlobStore
from vigil.storage.db import Database
from vigil.storage.index import IndexStore
from vigil.storage.milvus import MilvusStore
from vigil.vision.engine import FaceEngine, build_engine
from vigil.vision.packs.resolve import resolve_pack


@dataclass
class App:
    """Everything a service needs. The face engine loads lazily (model files are large)."""

    settings: Settings
    engine_override: FaceEngine | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        key = self.settings.encryption_key
        crypto.configure(key.get_secret_value() if key is not None else None)

    @cached_property
    def db(self) -> Database:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return Database(self.settings.database)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(self.settings.blob_dir)

    @cached_property
    def indexes(self) -> IndexStore | MilvusStore:
        """The galleries' vector indexes: FAISS files in the data directory (exact, then approximate
        past a size, see :mod:`vigil.storage.ann`), or Milvus (``VIGIL_VECTOR_URL``,
        :mod:`vigil.storage.milvus`)."""
        s = self.settings
        if s.vector_url is not None:
            token = s.vector_token.get_secret_value() if s.vector_token is not None else None
            return MilvusStore(s.vector_url, token=token, prefix=s.vector_prefix, index_type=s.vector_index)
        policy = IndexPolicy(
            approximate_above=s.index_approximate_above,
            compressed_above=s.index_compressed_above,
            nprobe=s.index_nprobe,
        )
        return IndexStore(s.index_dir, policy)

    @cached_property
    def pack(self) -> str | None:
        """The model pack in use (:func:`vigil.vision.packs.resolve.resolve_pack`: ``VIGIL_MODEL_PACK``,
        ``custom`` for the legacy model settings, the catalog's active pack, else the first-use
        choice); None when the engine was given (``engine_override``)."""
        return None if self.engine_override is not None else resolve_pack(self)

    @cached_property
    def engine(self) -> FaceEngine:
        if self.engine_override is not None:
            return self.engine_override
        return build_engine(self.settings, self.pack)

    def reload_engine(self) -> None:
        """Forget the engine and the pack, so the next use resolves the pack again (after a switch)."""
        self.__dict__.pop("engine", None)
        self.__dict__.pop("pack", None)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
