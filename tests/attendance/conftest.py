"""Attendance fixtures (the day at the entrance is built in attendance_day.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from attendance_day import EntranceDay, build_day


@pytest.fixture(scope="session")
def entrance_day(
    shared_data: Path, engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EntranceDay]:
    """The catalog after a day at the entrance (see :func:`attendance_day.build_day`)."""
    day = build_day(shared_data, engine, tmp_path_factory.mktemp("entrance-day"))
    yield day
    day.app.close()
