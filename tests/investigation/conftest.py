"""Fixtures of the investigation tests (the helpers are in sighting_seed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sighting_seed import Seed, copy_seed, make_seed

from vigil.app import App
from vigil.core.config import Settings


@pytest.fixture(scope="session")
def seed(shared_data: Path, engine, tmp_path_factory: pytest.TempPathFactory) -> Seed:  # type: ignore[no-untyped-def]
    """The seeded catalog (see sighting_seed.py), made once per session."""
    return make_seed(shared_data, engine, tmp_path_factory.mktemp("investigation-seed"))


@pytest.fixture
def inv_app(seed: Seed, tmp_path: Path, engine) -> Iterator[App]:  # type: ignore[no-untyped-def]
    """An application context on a private copy of the seeded catalog."""
    a = App(Settings(data_dir=copy_seed(seed, tmp_path / "data")), engine_override=engine)
    yield a
    a.close()
