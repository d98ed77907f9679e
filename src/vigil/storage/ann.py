"""Approximate tiers of a gallery index: IVF lists searched ``nprobe`` at a time, scores made exact.

Two tiers above exact search (see :class:`IndexPolicy`):

* ``ivf``: ``IndexIVFFlat``. The lists hold the float32 templates themselves, so every candidate
  found is scored exactly (the returned scores are the dot products; the threshold decisions made on
  them are exact). Memory is that of exact search plus the ids.
* ``ivf-sq8``: ``IndexIVFScalarQuantizer`` (8 bits a dimension, a quarter of float32) in memory,
  and a float32 :class:`VectorStore` (a memory-mapped file beside the index file where the index
  files are not encrypted) from which the best ``rerank`` candidates are re-scored exactly.

Both take adds (``add_with_ids``) and removals (``remove_ids``, through a hash-table direct map)
without a rebuild. The coarse quantiser is trained once on a sample; it is retrained (a rebuild of
this index, not of the catalog) only when the gallery has grown ``RETRAIN_GROWTH`` times past the
size it was trained at, so that lists stay short: amortised, a constant cost per template added.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

RETRAIN_GROWTH = 4
"""Retrain the coarse quantiser once the index holds this many times what it was trained on."""
TRAIN_PER_LIST = 40
"""Training sample: this many vectors per inverted list (FAISS warns below 39)."""
MAX_NLIST = 4096
"""Upper bound on lists: assigning 10M x 512 templates to 4096 centroids already takes ~15 min on
two cores; more lists would shorten searches at 10M but lengthen every (re)build."""
ADD_CHUNK = 262_144
RECHECK_WIDEN = 8
"""``ivf-sq8``: a recheck searches this many times the usual lists."""


@dataclass(frozen=True)
class IndexPolicy:
    """When a gallery's index leaves exact search, and how the approximate tiers search.

    Defaults are measured (``bench/search.py``, docs/performance.md "Search at scale")."""

    approximate_above: int = 100_000
    """Exact search up to this many templates, ``ivf`` above it."""
    compressed_above: int = 2_000_000
    """``ivf-sq8`` with exact re-ranking from a float32 store above this many templates."""
    nprobe: int = 48
    """Lists searched per query (recall@1 >= 0.99 of exact at 1M on clustered synthetic vectors)."""
    rerank: int = 32
    """``ivf-sq8``: candidates re-scored exactly per query (at least k)."""

    def kind_for(self, n: int) -> str:
        if n > self.compressed_above:
            return "ivf-sq8"
        if n > self.approximate_above:
            return "ivf"
        return "exact"


def _faiss_any() -> Any:
    """faiss, untyped (its stubs lack the direct map and the search parameters' keywords)."""
    import faiss

    return faiss


def nlist_for(n: int) -> int:
    """Inverted lists for ``n`` templates: ~4 sqrt(n) (balances the quantiser against list scans)."""
    return int(min(MAX_NLIST, max(16, round(4 * np.sqrt(max(n, 1))))))


class VectorStore:
    """float32 templates by id: a memory-mapped append-only file (``path``), or in memory (None).

    Rows are only appended, never reused, so a reader holding an older map never reads another
    template in a row it knew; a removed id's row is overwritten with zeros at once (erasure), and
    the space is reclaimed when the next rebuild writes a fresh store."""

    def __init__(self, dimension: int, path: Path | None = None) -> None:
        self.dimension = dimension
        self.path = path
        self._ids = np.empty(0, np.int64)  # sorted
        self._rows = np.empty(0, np.int64)  # row of each id in _ids
        self._count = 0  # rows written
        self._data: Any = np.empty((0, dimension), np.float32)
        if path is not None:
            path.write_bytes(b"")

    def __len__(self) -> int:
        return len(self._ids)

    def append(self, ids: IdArray, vectors: FloatArray) -> None:
        if not len(ids):
            return
        rows = np.arange(self._count, self._count + len(ids), dtype=np.int64)
        if self.path is not None:
            with self.path.open("ab") as fh:
                fh.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
            self._count += len(ids)
            self._remap()
        else:
            self._data = np.concatenate([self._data[: self._count], vectors.astype(np.float32)])
            self._count += len(ids)
        self.forget(ids)
        ids_all = np.concatenate([self._ids, ids])
        rows_all = np.concatenate([self._rows, rows])
        order = np.argsort(ids_all, kind="stable")
        self._ids, self._rows = ids_all[order], rows_all[order]

    def _remap(self) -> None:
        assert self.path is not None
        if self._count:
            self._data = np.memmap(self.path, dtype="<f4", mode="r", shape=(self._count, self.dimension))

    def forget(self, ids: IdArray) -> None:
        """Drop ``ids`` and overwrite their rows with zeros (an erased template leaves no copy here)."""
        if not (len(ids) and len(self._ids)):
            return
        gone = np.isin(self._ids, ids)
        if not gone.any():
            return
        rows = np.sort(self._rows[gone])
        self._ids, self._rows = self._ids[~gone], self._rows[~gone]
        if self.path is None:
            self._data[rows] = 0
            return
        zeros = bytes(4 * self.dimension)
        with self.path.open("r+b") as fh:
            for row in rows.tolist():
                fh.seek(row * len(zeros))
                fh.write(zeros)

    def get(self, ids: IdArray) -> FloatArray:
        """Vectors of ``ids`` (any shape); zeros where an id is not held (or is -1)."""
        flat = ids.reshape(-1)
        pos = np.searchsorted(self._ids, flat).clip(0, max(len(self._ids) - 1, 0))
        found = (
            (len(self._ids) > 0) & (self._ids[pos] == flat) if len(self._ids) else np.zeros_like(flat, bool)
        )
        out = np.zeros((len(flat), self.dimension), np.float32)
        if found.any():
            rows = self._rows[pos[found]]
            order = np.argsort(rows)  # ascending rows: sequential reads from the file
            out[np.flatnonzero(found)[order]] = self._data[rows[order]]
        return out.reshape(*ids.shape, self.dimension)

    def items(self, chunk: int = ADD_CHUNK) -> Any:
        """(ids, vectors) in chunks, by id."""
        for start in range(0, len(self._ids), chunk):
            ids = self._ids[start : start + chunk]
            yield ids, np.asarray(self._data[self._rows[start : start + chunk]], dtype=np.float32)

    def state(self) -> dict[str, Any]:
        return {"ids": self._ids, "rows": self._rows, "count": self._count}

    def adopt(self, path: Path | None, state: dict[str, Any], data: FloatArray | None) -> None:
        """Take over a saved state: the file at ``path`` (memory-mapped) or ``data`` (in memory)."""
        self.path = path
        self._ids, self._rows, self._count = state["ids"], state["rows"], int(state["count"])
        if path is not None:
            self._remap()
        else:
            self._data = data if data is not None else np.empty((0, self.dimension), np.float32)


class IvfIndex:
    """An IVF index over inner product, ``kind`` ``ivf`` (Flat) or ``ivf-sq8`` (with a store)."""

    def __init__(self, ivf: Any, kind: str, policy: IndexPolicy, store: VectorStore | None) -> None:
        self._ivf = ivf
        self.kind = kind
        self.policy = policy
        self.store = store
        self.dimension = int(ivf.d)
        self.trained_on = int(ivf.ntotal) or 1

    @classmethod
    def train(
        cls,
        dimension: int,
        sample: FloatArray,
        n: int,
        kind: str,
        policy: IndexPolicy,
        store: VectorStore | None,
    ) -> IvfIndex:
        """A trained, empty index for ``n`` templates (``sample``: a random subset of them)."""
        import faiss

        nlist = min(nlist_for(n), max(1, len(sample) // TRAIN_PER_LIST))
        quantizer = faiss.IndexFlatIP(dimension)
        ivf: Any
        if kind == "ivf":
            ivf = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        ivf.cp.seed = 1234
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.set_direct_map_type(_faiss_any().DirectMap.Hashtable)
        index = cls(ivf, kind, policy, store)
        index.trained_on = n
        return index

    @property
    def nlist(self) -> int:
        return int(self._ivf.nlist)

    def __len__(self) -> int:
        return int(self._ivf.ntotal)

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        for start in range(0, len(ids), ADD_CHUNK):
            part = np.ascontiguousarray(vectors[start : start + ADD_CHUNK], dtype=np.float32)
            part_ids = np.ascontiguousarray(ids[start : start + ADD_CHUNK], dtype=np.int64)
            self.remove(part_ids)  # an id re-added replaces its old vector
            if self.store is not None:
                self.store.append(part_ids, part)
            self._ivf.add_with_ids(part, part_ids)

    def remove(self, ids: IdArray) -> None:
        import faiss

        if not len(ids) or not len(self):
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._ivf.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
        if self.store is not None:
            self.store.forget(ids)

    def search(
        self, queries: FloatArray, k: int, exact: bool = False, recheck_above: float | None = None
    ) -> tuple[IdArray, FloatArray]:
        """(q, k) ids and exact scores, best first. ``exact``: every list searched (ground truth).

        ``recheck_above``: queries whose best score found reaches it are searched again, exhaustively
        in the ``ivf`` tier (so a decision at a threshold above it is that of exact search) and over
        ``RECHECK_WIDEN`` times the lists in ``ivf-sq8`` (an exhaustive pass there reads the store)."""
        ids, scores = self._search(queries, k, self._nprobe(exact))
        if recheck_above is not None and not exact:
            again = np.flatnonzero(scores[:, 0] >= recheck_above)
            if len(again):
                wide = self.nlist if self.store is None else self._nprobe(False) * RECHECK_WIDEN
                ids[again], scores[again] = self._search(queries[again], k, min(self.nlist, wide))
        return ids, scores

    def _nprobe(self, exact: bool) -> int:
        return self.nlist if exact else min(self.nlist, self.policy.nprobe)

    def _search(self, queries: FloatArray, k: int, nprobe: int) -> tuple[IdArray, FloatArray]:
        fetch = k if self.store is None else max(k, self.policy.rerank)
        params = _faiss_any().SearchParametersIVF(nprobe=nprobe)
        scores, ids = self._ivf.search(queries, min(fetch, len(self)), params=params)
        if self.store is None:
            return ids[:, :k].astype(np.int64), scores[:, :k].astype(np.float32)
        return self._rerank(queries, ids.astype(np.int64), k)

    def _rerank(self, queries: FloatArray, ids: IdArray, k: int) -> tuple[IdArray, FloatArray]:
        assert self.store is not None
        vectors = self.store.get(ids)
        scores = np.einsum("qkd,qd->qk", vectors, queries).astype(np.float32)
        scores[ids < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)

    def items(self) -> Any:
        """(ids, vectors) of everything held, in chunks (float32: exact, from the lists or the store)."""
        import faiss

        if self.store is not None:
            yield from self.store.items()
            return
        invlists = self._ivf.invlists
        d = self.dimension
        for lst in range(self.nlist):
            size = invlists.list_size(lst)
            if size:
                ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()
                codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * d * 4)
                yield ids.astype(np.int64), np.frombuffer(codes, np.float32).reshape(size, d).copy()

    def needs_retrain(self) -> bool:
        return len(self) > RETRAIN_GROWTH * self.trained_on and nlist_for(len(self)) > self.nlist

    def to_bytes(self) -> bytes:
        """The index (and an in-memory store) as one blob; a memory-mapped store stays in its file."""
        import faiss

        meta = {"kind": self.kind, "trained_on": self.trained_on}
        arrays: dict[str, Any] = {"ivf": faiss.serialize_index(self._ivf)}
        if self.store is not None:
            state = self.store.state()
            arrays |= {"store_ids": state["ids"], "store_rows": state["rows"]}
            meta["store_count"] = state["count"]
            if self.store.path is None:
                arrays["store_data"] = np.asarray(self.store._data[: state["count"]])
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, policy: IndexPolicy, store_path: Path | None) -> IvfIndex:
        import faiss

        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        meta = json.loads(arrays["meta"].tobytes())
        ivf: Any = faiss.deserialize_index(arrays["ivf"])
        ivf.set_direct_map_type(_faiss_any().DirectMap.Hashtable)
        store = None
        if "store_ids" in arrays:
            store = VectorStore(int(ivf.d))
            state = {"ids": arrays["store_ids"], "rows": arrays["store_rows"], "count": meta["store_count"]}
            in_memory = arrays.get("store_data", None)
            store.adopt(None if in_memory is not None else store_path, state, in_memory)
        index = cls(ivf, meta["kind"], policy, store)
        index.trained_on = int(meta["trained_on"])
        return index


def replace_store_file(store: VectorStore | None, final: Path) -> None:
    """Move a freshly built store file into place (readers of the old one keep their inode)."""
    if store is not None and store.path is not None and store.path != final:
        os.replace(store.path, final)
        store.path = final
