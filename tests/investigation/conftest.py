"""Fixtures of the investigation tests (the helpers are in sighting_seed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sighting_seed import Seed, copy_seed, make_seed

from pgserver import catalog_url, copy_catalog, drop_catalog
from vigil.app import App
from vigil.core.config import Settings


@pytest.fixture(scope="session")
def sqlite_seed(shared_data: Path, engine, tmp_path_factory: pytest.TempPathFactory) -> Seed:  # type: ignore[no-untyped-def]
    """The seeded catalog (see sighting_seed.py) in SQLite, made once per session."""
    return make_seed(shared_data, engine, tmp_path_factory.mktemp("investigation-seed"))


@pytest.fixture(scope="session")
def postgresql_seed(shared_data: Path, engine, tmp_path_factory: pytest.TempPathFactory) -> Seed:  # type: ignore[no-untyped-def]
    """The seeded catalog in a PostgreSQL database, made once per session (tests copy the database)."""
    root = tmp_path_factory.mktemp("investigation-seed-pg")
    return make_seed(shared_data, engine, root, database_url=catalog_url("postgresql"))


@pytest.fixture(scope="module")
def seed(catalog_kind: str, request: pytest.FixtureRequest) -> Seed:
    """The seeded catalog on the module's catalog database (SQLite unless marked ``catalogs``)."""
    found = request.getfixturevalue(f"{catalog_kind}_seed")
    assert isinstance(found, Seed)
    return found


@pytest.fixture
def inv_app(seed: Seed, tmp_path: Path, engine) -> Iterator[App]:  # type: ignore[no-untyped-def]
    """An application context on a private copy of the seeded catalog."""
    url = copy_catalog(seed.database_url) if seed.database_url else None
    a = App(Settings(data_dir=copy_seed(seed, tmp_path / "data"), database_url=url), engine_override=engine)
    yield a
    a.close()
    drop_catalog(url)
