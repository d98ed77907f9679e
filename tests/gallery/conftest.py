"""The gallery tests run twice: on FAISS index files (the default) and on Milvus (``VIGIL_VECTOR_URL``,
here Milvus Lite), so a Milvus-backed gallery passes the same tests as a FAISS one (issue 15)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

_prefixes = itertools.count()


@pytest.fixture(params=["faiss", "milvus"])
def vectors(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "faiss":
        return {}
    url = request.getfixturevalue("milvus_lite")
    assert isinstance(url, Path)
    return {"vector_url": str(url), "vector_prefix": f"t{next(_prefixes)}"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The vector backend and the catalog are independent: a test marked ``catalogs`` runs on
    PostgreSQL with FAISS only (Milvus is tested on SQLite), not on every pair."""
    dropped = [item for item in items if _params(item) == {"vectors": "milvus", "catalog_kind": "postgresql"}]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def _params(item: pytest.Item) -> dict[str, object]:
    spec = getattr(item, "callspec", None)
    if spec is None:
        return {}
    return {k: v for k, v in spec.params.items() if k in ("vectors", "catalog_kind")}
