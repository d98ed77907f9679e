"""Vector indexes: one FAISS index per gallery and model, kept in step with the catalog.

The catalog is the source of truth. Each saved index records the gallery *generation* it holds;
a gallery whose generation moved on (a process killed between commit and save, a change made
by another process) gets its index rebuilt from the catalog's templates on open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from vigil.core import crypto


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised vectors keyed by int64 ids (template ids)."""

    dimension: int

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None: ...

    def remove(self, ids: npt.NDArray[np.int64]) -> None: ...

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(q, k) ids (-1 where fewer than k exist) and (q, k) cosine scores, best first."""
        ...

    def __len__(self) -> int: ...


class FaissIndex:
    """Exact inner-product search (``IndexIDMap2(IndexFlatIP)``)."""

    def __init__(self, dimension: int, index: Any | None = None) -> None:
        import faiss

        self.dimension = dimension
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        if len(vectors):
            self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: npt.NDArray[np.int64]) -> None:
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[arg-type]

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = max(1, min(k, len(self))) if len(self) else 1
        if len(self) == 0:
            return np.full((len(queries), k), -1, np.int64), np.full((len(queries), k), -np.inf, np.float32)
        scores, ids = self._index.search(queries, k)
        return ids.astype(np.int64), scores.astype(np.float32)

    def ids(self) -> npt.NDArray[np.int64]:
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def save(self, path: Path) -> None:
        import faiss

        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(crypto.seal(faiss.serialize_index(self._index).tobytes()))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> FaissIndex:
        import faiss

        data = crypto.unseal(path.read_bytes())
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls(int(index.d), index)


@dataclass(frozen=True)
class IndexKey:
    gallery_id: int
    model_id: str

    @property
    def stem(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_id)
        return f"g{self.gallery_id}-{safe}"


class IndexStore:
    """Opens, rebuilds and saves the per-gallery, per-model indexes under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[IndexKey, tuple[int, FaissIndex]] = {}

    def _paths(self, key: IndexKey) -> tuple[Path, Path]:
        return self.root / f"{key.stem}.faiss", self.root / f"{key.stem}.json"

    def get(
        self,
        key: IndexKey,
        generation: int,
        dimension: int,
        load_templates: Any,
    ) -> FaissIndex:
        """The index for ``key`` at catalog ``generation``.

        ``load_templates()`` returns ``(ids (n,) int64, vectors (n, d) float32)`` from the catalog
        and is called only when no saved index holds this generation.
        """
        index = self._peek(key, generation, dimension)
        if index is None:
            index = self.rebuild(key, generation, dimension, load_templates())
        self._open[key] = (generation, index)
        return index

    def apply(
        self,
        key: IndexKey,
        change: tuple[int, int],
        dimension: int,
        added: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
        removed: npt.NDArray[np.int64],
        load_templates: Any,
    ) -> None:
        """Record a committed change that moved the gallery from generation ``change[0]`` to ``change[1]``.

        Applied incrementally when the index at the old generation is at hand, else rebuilt.
        """
        old_gen, new_gen = change
        index = self._peek(key, old_gen, dimension)
        if index is None:
            self.rebuild(key, new_gen, dimension, load_templates())
            return
        index.remove(removed)
        index.add(*added)
        self.save(key, new_gen, index)

    def _peek(self, key: IndexKey, generation: int, dimension: int) -> FaissIndex | None:
        cached = self._open.get(key)
        if cached and cached[0] == generation:
            return cached[1]
        index_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("generation") == generation and meta.get("dimension") == dimension:
                return FaissIndex.read(index_path)
        except (OSError, ValueError, RuntimeError):
            return None
        return None

    def rebuild(
        self,
        key: IndexKey,
        generation: int,
        dimension: int,
        templates: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
    ) -> FaissIndex:
        ids, vectors = templates
        index = FaissIndex(dimension)
        index.add(ids, vectors)
        self.save(key, generation, index)
        return index

    def save(self, key: IndexKey, generation: int, index: FaissIndex) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        index_path, meta_path = self._paths(key)
        index.save(index_path)
        tmp = meta_path.with_name(meta_path.name + ".tmp")
        tmp.write_text(
            json.dumps({"generation": generation, "dimension": index.dimension, "count": len(index)}),
            encoding="utf-8",
        )
        os.replace(tmp, meta_path)
        self._open[key] = (generation, index)

    def drop(self, keys: Iterable[IndexKey]) -> None:
        for key in keys:
            self._open.pop(key, None)
            for path in self._paths(key):
                path.unlink(missing_ok=True)

    def drop_gallery(self, gallery_id: int) -> None:
        self.drop([k for k in self._open if k.gallery_id == gallery_id])
        for path in self.root.glob(f"g{gallery_id}-*"):
            path.unlink(missing_ok=True)
