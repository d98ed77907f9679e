"""How the ``stranger_min_quality`` default was chosen: face quality of real faces, sharp, blurred, small.

    python bench/stranger_quality.py [--people 60] [--out bench/results/stranger_quality.json]

The first photo of the first ``--people`` LFW people of the shared data (``VIGIL_SHARED_DATA``, default
``../shared/data``), each pasted on a 640x360 grey frame as the face it is (about 107 px on its shorter
side), blurred (Gaussian, sigma 3 and 5 px), smeared (a 15 px horizontal motion blur), and scaled so
that the face is 60, 40 and 30 px. The default engine detects the faces and scores their quality
(:func:`vigil.vision.quality.face_quality`: size, sharpness, detector confidence, pose) as the camera
pipeline does. For each condition: how many faces are found, the quality's 10th, 50th and 90th
percentiles, and the share of the faces found that a gate at 0.80, 0.85 and 0.90 lets through as
possible strangers.

A stranger alarm keeps the face crop of a person who may belong there after all; a face the model
cannot recognise reliably must not become one. The default 0.85 lets most sharp faces through and
almost none of the blurred or small ones (see docs/cameras.md for the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

GATES = (0.80, 0.85, 0.90)


def _frame(img: Any, face_px: float) -> Any:
    import cv2

    scale = face_px / 107.0
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((360, 640, 3), 90, np.uint8)
    h, w = small.shape[:2]
    frame[20 : 20 + h, 20 : 20 + w] = small
    return frame


def conditions() -> dict[str, Any]:
    import cv2

    return {
        "sharp (about 107 px)": lambda i: _frame(i, 107),
        "Gaussian blur sigma 3": lambda i: _frame(cv2.GaussianBlur(i, (0, 0), 3), 107),
        "Gaussian blur sigma 5": lambda i: _frame(cv2.GaussianBlur(i, (0, 0), 5), 107),
        "motion blur 15 px": lambda i: _frame(cv2.filter2D(i, -1, np.ones((1, 15)) / 15), 107),
        "face 60 px": lambda i: _frame(i, 60),
        "face 40 px": lambda i: _frame(i, 40),
        "face 30 px": lambda i: _frame(i, 30),
    }


def main() -> None:
    import cv2

    from vigil.core.config import Settings
    from vigil.vision.engine import build_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stranger_quality.json")
    args = parser.parse_args()
    shared = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))
    people = sorted(p for p in (shared / "lfw-dev").iterdir() if p.is_dir())[: args.people]
    photos = [sorted(p.glob("*.jpg"))[0] for p in people]
    engine = build_engine(Settings(data_dir=Path(tempfile.mkdtemp())))
    rows = []
    for name, make in conditions().items():
        qualities = []
        for path in photos:
            faces = engine.detect(make(cv2.imread(str(path))))
            if len(faces) and faces.quality is not None:
                qualities.append(float(faces.quality[0]))
        q = np.asarray(qualities or [np.nan])
        rows.append(
            {
                "condition": name,
                "faces": len(photos),
                "found": len(qualities),
                "p10": round(float(np.percentile(q, 10)), 3),
                "median": round(float(np.median(q)), 3),
                "p90": round(float(np.percentile(q, 90)), 3),
                **{f"pass_{g:.2f}": round(float(np.mean(q >= g)) if qualities else 0.0, 3) for g in GATES},
            }
        )
    head = f"{'condition':24s} {'found':>9s} {'p10':>6s} {'median':>6s} {'p90':>6s} " + " ".join(
        f"{'>=' + format(g, '.2f'):>7s}" for g in GATES
    )
    print(head)
    for r in rows:
        gates = " ".join(f"{r[f'pass_{g:.2f}']:7.0%}" for g in GATES)
        found = f"{r['found']}/{r['faces']}"
        print(f"{r['condition']:24s} {found:>9s} {r['p10']:6.3f} {r['median']:6.3f} {r['p90']:6.3f} {gates}")
    result = {
        "bench": "stranger_quality",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "model": engine.model_id,
        "people": len(photos),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
