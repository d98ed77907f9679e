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
