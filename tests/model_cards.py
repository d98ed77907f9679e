"""The model card the tests give the shared ``mobilefacenet.onnx`` (an ArcFace-style 128-d embedder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def mobilefacenet_card(**changes: Any) -> dict[str, Any]:
    """The card as a dict, with ``changes`` applied to its top-level fields."""
    card: dict[str, Any] = {
        "id": "mobilefacenet-test",
        "name": "MobileFaceNet (test)",
        "dimension": 128,
        "preprocessing": {
            "alignment": "arcface5-112",
            "input_size_wh": [112, 112],
            "color": "RGB",
            "mean": 127.5,
            "std": 128.0,
        },
        "licence": "unverified, test only",
        "source": "shared test models",
        "default_threshold": 0.4,
    }
    card.update(changes)
    return card


def write_mobilefacenet_card(path: Path, **changes: Any) -> Path:
    """The card written as JSON to ``path`` (its folder made); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mobilefacenet_card(**changes)), encoding="utf-8")
    return path
