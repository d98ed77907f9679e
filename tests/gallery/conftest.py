from pathlib import Path

import pytest

from vigil.app import App
from vigil.core.config import Settings


@pytest.fixture
def app(tmp_path: Path, engine) -> App:  # type: ignore[no-untyped-def]
    a = App(Settings(data_dir=tmp_path / "data"), engine_override=engine)
    yield a
    a.close()
