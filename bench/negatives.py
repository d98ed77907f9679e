"""Reviews that teach: repeat false alarms for a look-alike before and after one dismissal.

    python bench/negatives.py [--out bench/results/negatives.json]

Jennifer Lopez is enrolled in a watchlist from her first two LFW photos. Angelina Jolie, who is not on
it, is a look-alike for the default engine (dlib ResNet on onnxruntime): her LFW photos score above
the watchlist's threshold against Lopez. A clip shows each of Jolie's photos as one appearance (12
frames on a 640x360 scene, then 1.2 s of empty scene, so that each photo is its own track), and a
second clip does the same with Lopez's photos that were not enrolled. Both clips go through `vigil
watch` (the real pipeline and catalog writer); then the first alarm of the look-alike clip is
dismissed as "not this person" and both clips are played again. Counted: alarms raised (pending),
alarms suppressed. Also measured: how well the template embedded again from the alarm's stored crop
(what a dismissal keeps) reproduces the pipeline's score (|score from crop - alarm score|).

Prints a table and writes JSON. Needs the shared data (``VIGIL_SHARED_DATA``, default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
os.environ.setdefault("VIGIL_MODEL_DOWNLOAD", "false")  # the default engine, as the tests use it
PERSON, LOOKALIKE = "Jennifer_Lopez", "Angelina_Jolie"
W, H, FPS, SHOWN, GAP = 640, 360, 25.0, 12, 30


def clip(path: Path, photos: list[Path]) -> None:
    """Each photo in the middle of a still scene for SHOWN frames, then GAP frames of the scene."""
    rng = np.random.default_rng(3)
    scene = np.full((H, W, 3), 95, np.uint8)
    scene[260:] = (70, 75, 80)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (W, H))
    for p in photos:
        img = cv2.imread(str(p))
        h, w = img.shape[:2]
        shown = scene.copy()
        shown[(H - h) // 2 : (H - h) // 2 + h, (W - w) // 2 : (W - w) // 2 + w] = img
        for frames, base in ((SHOWN, shown), (GAP, scene)):
            for _ in range(frames):
                noisy = base.astype(np.float32) + rng.normal(0, 1.5, base.shape)
                writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()


def count(app: Any, camera: str) -> dict[str, int]:
    from vigil.storage.tables import AlarmRecord, AlarmState

    with app.db.session() as s:
        states = list(s.scalars(select(AlarmRecord.state).where(AlarmRecord.camera_name == camera)))
    return {
        "alarms": sum(st == AlarmState.pending for st in states),
        "suppressed": sum(st == AlarmState.suppressed for st in states),
    }


def run(work: Path) -> dict[str, Any]:
    from vigil import accounts
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.gallery import enroll, galleries, negatives
    from vigil.storage.tables import AlarmRecord, ReviewAction, Role
    from vigil.video import alarms
    from vigil.video.watch import watch
    from vigil.vision.image import load_image

    app = App(Settings(data_dir=work / "data"))
    spec = galleries.validate_spec(
        name="wanted",
        kind="watchlist",
        purpose="bench",
        legal_basis="bench",
        authorized_by="bench",
        expires_on=date.today() + timedelta(days=30),
    )
    galleries.create_gallery(app, spec)
    person = sorted((SHARED / "lfw-dev" / PERSON).glob("*.jpg"))
    lookalike = sorted((SHARED / "lfw-dev" / LOOKALIKE).glob("*.jpg"))
    enroll.enroll(app, "wanted", "Jennifer Lopez", [load_image(p) for p in person[:2]])
    clips = {}
    for name, photos in (("lookalike", lookalike), ("person", person[2:])):
        for n in (1, 2):
            clips[f"{name}-{n}"] = work / f"{name}-{n}.mp4"
            clip(clips[f"{name}-{n}"], photos)
    for cam in ("lookalike-1", "person-1"):
        watch(app, str(clips[cam]))
    before = {cam: count(app, cam) for cam in ("lookalike-1", "person-1")}

    # How well a template embedded again from the stored crop reproduces the pipeline's score.
    templates = enroll.load_templates(app, _gallery_id(app), app.engine.model_id)
    with app.db.session() as s:
        first = list(
            s.execute(
                select(AlarmRecord.id, AlarmRecord.score)
                .where(AlarmRecord.camera_name == "lookalike-1")
                .order_by(AlarmRecord.frame_index)
            )
        )
    deltas = []
    for alarm_id, score in first:
        v = negatives.negative_template(app, alarm_id)
        deltas.append(abs(float(np.max(templates[1] @ v)) - score))

    accounts.add_user(app, "reviewer", Role.operator, by="bench")
    who = accounts.user_principal(app, "reviewer")
    alarms.review_alarm(
        app,
        first[0][0],
        ReviewAction.dismiss,
        who,
        expected_version=0,
        reason="not her",
        not_this_person=True,
    )
    for cam in ("lookalike-2", "person-2"):
        watch(app, str(clips[cam]))
    after = {cam: count(app, cam) for cam in ("lookalike-2", "person-2")}
    app.close()
    return {
        "photos": {"lookalike": len(lookalike), "person_not_enrolled": len(person) - 2},
        "lookalike": {"before": before["lookalike-1"], "after_one_dismissal": after["lookalike-2"]},
        "person": {"before": before["person-1"], "after_one_dismissal": after["person-2"]},
        "crop_template_score_delta": {
            "median": round(statistics.median(deltas), 5),
            "max": round(max(deltas), 5),
            "alarms": len(deltas),
        },
    }


def _gallery_id(app: Any) -> int:
    from vigil.storage.tables import Gallery

    with app.db.session() as s:
        return int(s.scalar(select(Gallery.id).where(Gallery.name == "wanted")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "negatives.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp))
    cpu = platform.processor() or platform.machine()
    result["machine"] = {"python": platform.python_version(), "cpu": cpu}
    la, pe = result["lookalike"], result["person"]
    print(f"{'clip':<34}{'alarms':>8}{'suppressed':>12}")
    print(f"{'look-alike, before':<34}{la['before']['alarms']:>8}{la['before']['suppressed']:>12}")
    a = la["after_one_dismissal"]
    print(f"{'look-alike, after one dismissal':<34}{a['alarms']:>8}{a['suppressed']:>12}")
    print(f"{'person, before':<34}{pe['before']['alarms']:>8}{pe['before']['suppressed']:>12}")
    a = pe["after_one_dismissal"]
    print(f"{'person, after one dismissal':<34}{a['alarms']:>8}{a['suppressed']:>12}")
    d = result["crop_template_score_delta"]
    print(f"template from the crop: |score delta| median {d['median']}, max {d['max']}, {d['alarms']} alarms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
