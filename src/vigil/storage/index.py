"""Vector indexes: one FAISS index per gallery and model, kept in step with the catalog.

The catalog is the source of truth. Each saved index records the gallery *generation* it holds;
a gallery whose generation moved on (a process killed between commit and save, a change made
by another process) gets its index rebuilt from the catalog's templates on open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from vigil.core import crypto
from vigil.core.errors import InputError
from vigil.storage.ann import (
    TRAIN_PER_LIST,
    IndexPolicy,
    IvfIndex,
    VectorStore,
    nlist_for,
    replace_store_file,
)


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


_TIERS = ("exact", "ivf", "ivf-sq8")


class FaissIndex:
    """Inner-product search over a gallery's templates, exact or approximate by size.

    Without a ``policy`` it is always exact (``IndexIDMap2(IndexFlatIP)``). With one, it moves up a
    tier (:mod:`vigil.storage.ann`) once an add takes it past the policy's thresholds; it never moves
    down (removals leave it where it is). Every tier returns exact scores for what it returns.
    ``store_path``: where the ``ivf-sq8`` tier keeps its memory-mapped float32 store (in memory when
    None, or when index files are encrypted: a memory-mapped store would be plaintext on disk).
    """

    def __init__(
        self,
        dimension: int,
        index: Any | None = None,
        policy: IndexPolicy | None = None,
        store_path: Path | None = None,
    ) -> None:
        import faiss

        self.dimension = dimension
        self.policy = policy
        self.store_path = store_path
        self._ivf: IvfIndex | None = index if isinstance(index, IvfIndex) else None
        self._index: Any = None
        if self._ivf is None:
            self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    @property
    def kind(self) -> str:
        return "exact" if self._ivf is None else self._ivf.kind

    @property
    def approximate(self) -> IvfIndex | None:
        return self._ivf

    def __len__(self) -> int:
        return len(self._ivf) if self._ivf is not None else int(self._index.ntotal)

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        vectors = self._shaped(vectors, "templates")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} templates", hint="give one id per template")
        if not len(vectors):
            return
        if self._ivf is not None:
            self._ivf.add(ids, vectors)
        else:
            self._index.add_with_ids(vectors, ids)
        self._maybe_retier()

    def remove(self, ids: npt.NDArray[np.int64]) -> None:
        if not len(ids):
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self._ivf is not None:
            self._ivf.remove(ids)
        else:
            self._index.remove_ids(ids)

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exact: bool = False,
        recheck_above: float | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``exact``: exhaustive even in an approximate tier (ground truth for recall).
        ``recheck_above``: approximate tiers search again, wider, the queries whose best score reaches
        it (:meth:`IvfIndex.search`); set below a decision threshold, decisions there are exact."""
        queries = self._shaped(queries, "queries")
        k = max(1, min(k, len(self))) if len(self) else 1
        if len(self) == 0:
            return np.full((len(queries), k), -1, np.int64), np.full((len(queries), k), -np.inf, np.float32)
        if self._ivf is not None:
            return self._ivf.search(queries, k, exact=exact, recheck_above=recheck_above)
        scores, ids = self._index.search(queries, k)
        return ids.astype(np.int64), scores.astype(np.float32)

    def _shaped(self, vectors: npt.NDArray[np.float32], what: str) -> npt.NDArray[np.float32]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim not in (1, 2) or vectors.shape[-1] != self.dimension:
            raise InputError(
                f"{what} of shape {vectors.shape} for an index of {self.dimension}-dimensional templates",
                hint="search and add with vectors from the model this index was built for",
            )
        return vectors.reshape(-1, self.dimension)

    def items(self) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """(ids, float32 vectors) of every template held, in chunks."""
        import faiss

        if self._ivf is not None:
            yield from self._ivf.items()
            return
        if isinstance(self._index, _ChunkSource):
            yield from self._index.chunks()
            return
        n, d = len(self), self.dimension
        if n:
            flat: Any = faiss.downcast_index(self._index.index)
            vectors = np.asarray(faiss.rev_swig_ptr(flat.get_xb(), n * d)).reshape(n, d)  # a view
            yield faiss.vector_to_array(self._index.id_map).astype(np.int64), vectors

    def ids(self) -> npt.NDArray[np.int64]:
        parts = [ids for ids, _ in self.items()]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def copy(self) -> FaissIndex:
        """A private copy (a memory-mapped store is shared: it is only ever appended to)."""
        import faiss

        if self._ivf is None:
            return FaissIndex(self.dimension, faiss.clone_index(self._index), self.policy, self.store_path)
        ivf = IvfIndex.from_bytes(self._ivf.to_bytes(), self._ivf.policy, self._store_file())
        return FaissIndex(self.dimension, ivf, self.policy, self.store_path)

    def _store_file(self) -> Path | None:
        ivf = self._ivf
        return ivf.store.path if ivf is not None and ivf.store is not None else None

    def _maybe_retier(self) -> None:
        if self.policy is None:
            return
        want = _TIERS.index(self.policy.kind_for(len(self)))
        have = _TIERS.index(self.kind)
        if want > have or (self._ivf is not None and self._ivf.needs_retrain()):
            self._ivf = self._build(_TIERS[max(want, have)])
            self._index = None

    def _build(self, kind: str) -> IvfIndex:
        """A freshly trained ``kind`` index holding everything this one holds (streamed in chunks)."""
        assert self.policy is not None
        n = len(self)
        rng = np.random.default_rng(0)
        take = min(1.0, TRAIN_PER_LIST * nlist_for(n) / max(n, 1))
        sample = np.concatenate([v[rng.random(len(v)) < take] for _, v in self.items()])
        store = None
        if kind == "ivf-sq8":
            path = None
            if self.store_path is not None and crypto.active() is None:
                path = self.store_path.with_name(f"{self.store_path.name}.{os.getpid()}.{id(self)}.new")
            store = VectorStore(self.dimension, path)
        built = IvfIndex.train(self.dimension, sample, n, kind, self.policy, store)
        for ids, vectors in self.items():
            built.add(ids, vectors)
        return built

    @classmethod
    def build(
        cls,
        dimension: int,
        templates: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
        policy: IndexPolicy | None = None,
        store_path: Path | None = None,
    ) -> FaissIndex:
        """An index of ``templates`` in the tier their number calls for, trained once."""
        ids, vectors = templates
        index = cls(dimension, policy=policy, store_path=store_path)
        kind = policy.kind_for(len(ids)) if policy is not None else "exact"
        if kind == "exact":
            index.add(ids, vectors)
            return index
        staged = cls(dimension)  # only its items() are used: vectors as given, no copy
        staged._index = _ChunkSource(ids, vectors)
        staged.policy, staged.store_path = policy, store_path
        index._ivf = staged._build(kind)
        index._index = None
        return index

    def save(self, path: Path) -> None:
        import faiss

        if self._ivf is not None:
            replace_store_file(self._ivf.store, path.with_suffix(".vec"))
            data = self._ivf.to_bytes()
        else:
            data = faiss.serialize_index(self._index).tobytes()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(crypto.seal(data))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path, policy: IndexPolicy | None = None) -> FaissIndex:
        import faiss

        data = crypto.unseal(path.read_bytes())
        store_path = path.with_suffix(".vec")
        if data[:2] == b"PK":  # an approximate tier (an .npz container)
            ivf = IvfIndex.from_bytes(data, policy or IndexPolicy(), store_path)
            return cls(ivf.dimension, ivf, policy, store_path)
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls(int(index.d), index, policy, store_path)


class _ChunkSource:
    """Stands in for the exact index while :meth:`FaissIndex.build` streams given vectors."""

    def __init__(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        self.ids, self.vectors = np.ascontiguousarray(ids, dtype=np.int64), vectors
        self.ntotal = len(ids)

    def chunks(self, size: int = 262_144) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        for start in range(0, self.ntotal, size):
            part = np.asarray(self.vectors[start : start + size], dtype=np.float32)
            yield self.ids[start : start + size], part


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

    def __init__(self, root: Path, policy: IndexPolicy | None = None) -> None:
        self.root = root
        self.policy = policy
        self._open: dict[IndexKey, tuple[int, FaissIndex]] = {}

    def _paths(self, key: IndexKey) -> tuple[Path, Path]:
        return self.root / f"{key.stem}.faiss", self.root / f"{key.stem}.json"

    def _store_path(self, key: IndexKey) -> Path:
        return self.root / f"{key.stem}.vec"

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
            wanted = self.policy.kind_for(int(meta.get("count", 0))) if self.policy else "exact"
            if (
                meta.get("generation") == generation
                and meta.get("dimension") == dimension
                and meta.get("kind", "exact") == wanted  # a changed policy takes effect on open
            ):
                return FaissIndex.read(index_path, self.policy)
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
        self.root.mkdir(parents=True, exist_ok=True)
        index = FaissIndex.build(dimension, templates, self.policy, self._store_path(key))
        self.save(key, generation, index)
        return index

    def save(self, key: IndexKey, generation: int, index: FaissIndex) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        index_path, meta_path = self._paths(key)
        meta_path.unlink(missing_ok=True)  # no moment where the old generation names the new files
        index.save(index_path)
        tmp = meta_path.with_name(meta_path.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "generation": generation,
                    "dimension": index.dimension,
                    "count": len(index),
                    "kind": index.kind,
                }
            ),
            encoding="utf-8",
        )
        os.replace(tmp, meta_path)
        self._open[key] = (generation, index)

    def drop(self, keys: Iterable[IndexKey]) -> None:
        for key in keys:
            self._open.pop(key, None)
            for path in (*self._paths(key), self._store_path(key)):
                path.unlink(missing_ok=True)

    def drop_gallery(self, gallery_id: int) -> None:
        self.drop([k for k in self._open if k.gallery_id == gallery_id])
        for path in self.root.glob(f"g{gallery_id}-*"):
            path.unlink(missing_ok=True)
