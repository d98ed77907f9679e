"""The application context: settings, catalog, blobs, indexes and the face engine, made once.

The CLI and (later) the API are thin layers over services that take this context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from vigil.core import crypto
from vigil.core.config import Settings
from vigil.gallery.blobs import BlobStore
from vigil.gallery.db import Database
from vigil.gallery.index import IndexStore
from vigil.vision.engine import FaceEngine, build_engine


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
    def indexes(self) -> IndexStore:
        return IndexStore(self.settings.index_dir)

    @cached_property
    def engine(self) -> FaceEngine:
        return self.engine_override or build_engine(self.settings)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
