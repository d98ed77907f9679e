"""docs/governance.md maps each safeguard to tests: every test it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_named_in_governance_md_exists() -> None:
    text = (ROOT / "docs" / "governance.md").read_text(encoding="utf-8")
    current: str | None = None
    named = 0
    for m in re.finditer(r"`(tests/[\w/]+\.py)?::(\w+)`", text):
        current = m.group(1) or current
        assert current is not None, m.group(0)
        source = (ROOT / current).read_text(encoding="utf-8")
        assert re.search(rf"^def {m.group(2)}\(", source, re.MULTILINE), f"{current}::{m.group(2)} is missing"
        named += 1
    assert named >= 30
