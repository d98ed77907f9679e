"""Galleries' vectors in Milvus (``VIGIL_VECTOR_URL``), for galleries larger than one machine.

The same contract as :class:`vigil.storage.index.IndexStore`: one collection per gallery and model,
kept in step with the catalog, which stays the source of truth. Each collection's catalog
*generation* is kept in a small ``<prefix>_meta`` collection; a collection whose generation is not
the catalog's (a process killed between the commit and the Milvus write, a change made by another
server) is rebuilt from the catalog's templates when it is next opened. Adds and removals (enrolment,
erasure, retention, a model switch) are applied to Milvus as they commit, so an erased person's
vectors leave Milvus with their templates.

The URL is what ``pymilvus.MilvusClient`` takes: ``http://host:19530`` (a Milvus server or cluster;
``VIGIL_VECTOR_TOKEN`` for its ``user:password`` or API key) or a local file path ending in ``.db``
(Milvus Lite, embedded: what the tests use). Collections are made with ``Strong`` consistency, so a
search sees the templates enrolled before it; their index is ``VIGIL_VECTOR_INDEX`` (``FLAT``: exact,
the default; ``HNSW`` or ``IVF_FLAT`` on a server for large galleries; both return exact
inner-product scores of the stored vectors, which the threshold decision needs).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ConfigError
from vigil.storage.index import IndexKey

log = logging.getLogger(__name__)

INSERT_CHUNK = 5_000
"""Rows per insert call (5,000 x 512 float32 is 10 MB, well under gRPC's message limit)."""
SEARCH_PARAMS: dict[str, dict[str, Any]] = {
    "FLAT": {},
    "IVF_FLAT": {"nprobe": 32},
    "HNSW": {"ef": 128},
}
INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "FLAT": {},
    "IVF_FLAT": {"nlist": 1024},
    "HNSW": {"M": 16, "efConstruction": 200},
}
Loader = Any
"""``load_templates()``: (ids (n,) int64, vectors (n, d) float32) from the catalog."""


_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def _client(url: str, token: str | None) -> Any:
    """One client per Milvus deployment and process, shared by every store (a client per store
    would open a gRPC channel each, and Milvus refuses a process that pings it over too many)."""
    with _clients_lock:
        found = _clients.get((url, token or ""))
        if found is not None:
            return found
        try:
            from pymilvus import MilvusClient
        except ImportError as e:  # pragma: no cover - an install without the extra
            raise ConfigError(
                "VIGIL_VECTOR_URL names a Milvus server but pymilvus is not installed",
                hint="pip install 'vigil[milvus]'",
            ) from e
        try:
            client = MilvusClient(uri=url, token=token or "")
        except Exception as e:  # pymilvus raises its own MilvusException and grpc errors
            raise ConfigError(f"cannot reach Milvus at {url}: {e}", hint="check VIGIL_VECTOR_URL") from e
        _clients[url, token or ""] = client
        return client


class MilvusIndex:
    """One collection: inner-product search over L2-normalised vectors keyed by template id."""

    def __init__(self, client: Any, name: str, dimension: int, index_type: str) -> None:
        self._client = client
        self.name = name
        self.dimension = dimension
        self._search_params = {"metric_type": "IP", "params": SEARCH_PARAMS.get(index_type, {})}

    def __len__(self) -> int:
        rows = self._client.query(
            self.name, filter="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def ids(self) -> npt.NDArray[np.int64]:
        """Every template id in the collection (read in batches)."""
        found: list[int] = []
        it = self._client.query_iterator(self.name, batch_size=10_000, filter="id >= 0", output_fields=["id"])
        try:
            while batch := it.next():
                found.extend(int(r["id"]) for r in batch)
        finally:
            it.close()
        return np.array(sorted(found), dtype=np.int64)

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        for i in range(0, len(vectors), INSERT_CHUNK):
            rows = [
                {"id": int(t), "vector": v}
                for t, v in zip(ids[i : i + INSERT_CHUNK], vectors[i : i + INSERT_CHUNK], strict=True)
            ]
            self._client.insert(self.name, rows)

    def remove(self, ids: npt.NDArray[np.int64]) -> None:
        if len(ids):
            self._client.delete(self.name, ids=[int(t) for t in ids])

    def search(
        self, queries: npt.NDArray[np.float32], k: int, recheck_above: float | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(q, k) ids (-1 where fewer than k exist) and (q, k) cosine scores, best first.
        ``recheck_above`` is accepted for the index contract and has nothing to do here: every Milvus
        index type vigil configures returns exact scores for the hits it returns."""
        del recheck_above
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = max(1, min(k, 16_384))  # Milvus' top-k limit
        ids = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        if len(queries) == 0:
            return ids, scores
        found = self._client.search(
            self.name,
            data=list(queries),
            limit=k,
            search_params=self._search_params,
            output_fields=["id"],
            consistency_level="Strong",
        )
        for row, hits in enumerate(found):
            for col, hit in enumerate(hits):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return ids, scores


class MilvusStore:
    """Opens, rebuilds and updates the per-gallery, per-model collections of one Milvus deployment."""

    def __init__(
        self, url: str, *, token: str | None = None, prefix: str = "vigil", index_type: str = "FLAT"
    ) -> None:
        if index_type not in INDEX_PARAMS:
            raise ConfigError(
                f"VIGIL_VECTOR_INDEX {index_type!r} is not one of {', '.join(INDEX_PARAMS)}",
                hint="FLAT (exact) unless the galleries hold millions of templates",
            )
        self.url, self.prefix, self.index_type = url, prefix, index_type
        self._client = _client(url, token)
        self._lock = threading.Lock()
        self._known: dict[str, tuple[int, int]] = {}
        """collection -> (generation, dimension) as this process last wrote or read it: a search at the
        catalog generation it names needs no round trip to the meta collection."""
        self._meta = f"{prefix}_meta"
        self._ensure_meta()

    # -- the generation of each collection ---------------------------------------------------------
    def _ensure_meta(self) -> None:
        if self._client.has_collection(self._meta):
            return
        from pymilvus import DataType

        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("generation", DataType.INT64)
        schema.add_field("dimension", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        self._client.create_collection(
            self._meta, schema=schema, index_params=index, consistency_level="Strong"
        )

    @staticmethod
    def _meta_id(name: str) -> int:
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big")

    def _generation(self, name: str, dimension: int) -> int | None:
        known = self._known.get(name)
        if known is not None and known[1] == dimension:
            return known[0]
        rows = self._client.get(
            self._meta, ids=[self._meta_id(name)], output_fields=["generation", "dimension"]
        )
        if not rows or int(rows[0]["dimension"]) != dimension or not self._client.has_collection(name):
            return None
        self._known[name] = (int(rows[0]["generation"]), dimension)
        return self._known[name][0]

    def _set_generation(self, name: str, generation: int, dimension: int) -> None:
        row = {
            "id": self._meta_id(name),
            "generation": generation,
            "dimension": dimension,
            "vector": [0.0, 0.0],
        }
        self._client.upsert(self._meta, [row])
        self._known[name] = (generation, dimension)

    # -- collections -------------------------------------------------------------------------------
    def collection(self, key: IndexKey) -> str:
        safe = "".join(c if c.isalnum() else "_" for c in key.model_id)
        return f"{self.prefix}_g{key.gallery_id}_{safe}"

    def _create(self, name: str, dimension: int) -> MilvusIndex:
        from pymilvus import DataType

        if self._client.has_collection(name):
            self._client.drop_collection(name)
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        index = self._client.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type=self.index_type,
            metric_type="IP",
            params=INDEX_PARAMS[self.index_type],
        )
        self._client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        return self._open(name, dimension)

    def _open(self, name: str, dimension: int) -> MilvusIndex:
        return MilvusIndex(self._client, name, dimension, self.index_type)

    # -- the IndexStore contract -------------------------------------------------------------------
    def get(self, key: IndexKey, generation: int, dimension: int, load_templates: Loader) -> MilvusIndex:
        """The collection for ``key`` at catalog ``generation``, rebuilt from the catalog if it is not."""
        name = self.collection(key)
        with self._lock:
            if self._generation(name, dimension) == generation:
                return self._open(name, dimension)
            self._known.pop(name, None)  # another server may have moved it on: ask Milvus itself
            if self._generation(name, dimension) == generation:
                return self._open(name, dimension)
            return self._rebuild(key, generation, dimension, load_templates())

    def apply(
        self,
        key: IndexKey,
        change: tuple[int, int],
        dimension: int,
        added: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
        removed: npt.NDArray[np.int64],
        load_templates: Loader,
    ) -> None:
        """A committed change from generation ``change[0]`` to ``change[1]``: applied in place when the
        collection holds the old generation, else the collection is rebuilt from the catalog."""
        old_gen, new_gen = change
        name = self.collection(key)
        with self._lock:
            self._known.pop(name, None)  # a write asks Milvus itself
            if self._generation(name, dimension) != old_gen:
                self._rebuild(key, new_gen, dimension, load_templates())
                return
            index = self._open(name, dimension)
            index.remove(removed)
            index.add(*added)
            self._set_generation(name, new_gen, dimension)

    def rebuild(
        self,
        key: IndexKey,
        generation: int,
        dimension: int,
        templates: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
    ) -> MilvusIndex:
        with self._lock:
            return self._rebuild(key, generation, dimension, templates)

    def _rebuild(
        self,
        key: IndexKey,
        generation: int,
        dimension: int,
        templates: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
    ) -> MilvusIndex:
        name = self.collection(key)
        log.info("rebuilding Milvus collection %s from the catalog (%d templates)", name, len(templates[0]))
        index = self._create(name, dimension)
        index.add(*templates)
        self._set_generation(name, generation, dimension)
        return index

    def drop(self, keys: Iterable[IndexKey]) -> None:
        with self._lock:
            for key in keys:
                name = self.collection(key)
                self._known.pop(name, None)
                if self._client.has_collection(name):
                    self._client.drop_collection(name)
                self._client.delete(self._meta, ids=[self._meta_id(name)])

    def drop_gallery(self, gallery_id: int) -> None:
        start = f"{self.prefix}_g{gallery_id}_"
        self.drop(
            IndexKey(gallery_id, name[len(start) :])
            for name in self._client.list_collections()
            if name.startswith(start)
        )
