"""Server fixtures (the helpers live in harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Server, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module (tests in a module share its catalog)."""
    s = start_server(tmp_path_factory.mktemp("server"))
    yield s
    stop_server(s)
