"""Shared fixtures. Test data comes from one setting: ``VIGIL_SHARED_DATA`` (default ``../shared/data``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgserver import catalog_url, drop_catalog, stop_session_cluster

os.environ.setdefault("VIGIL_MODEL_DOWNLOAD", "false")  # no test tries the network by accident

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
SHARED_MODELS = SHARED_DATA.parent / "models"
_MISSING = (
    f"shared test data not found at {SHARED_DATA}; set VIGIL_SHARED_DATA to the folder holding "
    "people/, deepface-13/, lfw-dev/ and video/"
)


CATALOGS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``catalogs`` run on each catalog database; the others on SQLite only."""
    if "catalog_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("catalogs"):
        metafunc.parametrize("catalog_kind", CATALOGS, indirect=True, scope="module")


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_session_cluster()


@pytest.fixture(scope="module")
def catalog_kind(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql`` (tests marked ``catalogs`` get both; see tests/pgserver.py)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def catalog(catalog_kind: str) -> Iterator[str | None]:
    """The ``database_url`` of a fresh catalog for ``app``: None (SQLite in the data directory) or a new
    PostgreSQL database, dropped after the test."""
    url = catalog_url(catalog_kind)
    yield url
    drop_catalog(url)


@pytest.fixture(scope="module")
def module_catalog(catalog_kind: str) -> Iterator[str | None]:
    """:func:`catalog` for a module-scoped fixture (tests of a module that share one catalog)."""
    url = catalog_url(catalog_kind)
    yield url
    drop_catalog(url)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder, or skip with the reason."""
    if not (SHARED_DATA / "people").is_dir():
        pytest.skip(_MISSING)
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not (SHARED_MODELS / "face_detection_yunet_2023mar.onnx").is_file():
        pytest.skip(f"shared ONNX models not found at {SHARED_MODELS}")
    return SHARED_MODELS


@pytest.fixture(scope="session")
def people(shared_data: Path) -> Path:
    return shared_data / "people"


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The default engine (dlib HOG + the ResNet on onnxruntime), loaded once per session; its converted
    model goes to a temporary data directory, not the user's."""
    from vigil.core.config import Settings
    from vigil.vision.engine import build_engine

    return build_engine(Settings(data_dir=tmp_path_factory.mktemp("engine-data")))


@pytest.fixture
def vectors() -> dict[str, str]:
    """Settings of the vector backend for ``app``: none, FAISS files in the data directory.
    tests/gallery runs with Milvus as well (see its conftest.py)."""
    return {}


@pytest.fixture
def app(tmp_path: Path, engine, vectors: dict[str, str], catalog: str | None):  # type: ignore[no-untyped-def]
    """An application context on a fresh data directory and catalog, sharing the session's engine."""
    from vigil.app import App
    from vigil.core.config import Settings

    settings = Settings(
        data_dir=tmp_path / "data", media_dirs=[tmp_path, SHARED_DATA], database_url=catalog, **vectors
    )
    a = App(settings, engine_override=engine)
    yield a
    a.close()


@pytest.fixture(scope="session")
def milvus_lite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite database for the session (its server starts once per process); each test
    gets collections of its own through a prefix."""
    pytest.importorskip(
        "pymilvus", reason="pymilvus and milvus-lite are dev dependencies: pip install -e '.[dev]'"
    )
    return tmp_path_factory.mktemp("milvus") / "vectors.db"


@pytest.fixture
def run(tmp_path: Path, catalog: str | None):  # type: ignore[no-untyped-def]
    """``run(*args, code=0)``: invoke the CLI on a fresh data directory (and the test's catalog);
    (stdout, stderr)."""
    from typer.testing import CliRunner

    from vigil.cli import cli

    runner = CliRunner(env={"VIGIL_DATABASE_URL": catalog} if catalog else None)
    data_dir = tmp_path / "data"

    def invoke(*args: str, code: int = 0) -> tuple[str, str]:
        result = runner.invoke(cli, ["--data-dir", str(data_dir), *args])
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result.stdout, result.stderr

    invoke.data_dir = data_dir  # type: ignore[attr-defined]
    return invoke
