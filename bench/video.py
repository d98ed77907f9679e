"""Video benchmark: `vigil watch` frames per second, per stage and end to end, against a baseline.

    python bench/video.py [--quick] [--out bench/results/video.json]

Runs, each in its own process pinned to 1 or 2 cores (``os.sched_setaffinity``):

- the default pipeline on the hamilton clip (640x360) played 4 times in a row, and on the same
  clip upscaled to 1280x720, with Lin-Manuel Miranda enrolled in a watchlist;
- the same pipeline as it was before the onnxruntime backends and the faster detection stage
  (``vigil-before``: dlib's own ResNet embedder, HOG on the colour frame, every detection on the
  whole frame, inside the frame loop), on the same clip, for the ratio of the ONNX issue;
- the same clip through the ``face_recognition`` library's frame loop (HOG detection with its
  default upsampling + the same dlib ResNet on every face of every frame + ``compare_faces``), as
  documented in its examples: the baseline. Install it beside dlib-bin with
  ``pip install face_recognition==1.3.0 --no-deps`` (``make bench`` does).

Prints a table and writes JSON. Needs the shared data (``VIGIL_SHARED_DATA``, default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
CLIP = SHARED / "video" / "short_hamilton_clip.mp4"
PORTRAIT = SHARED / "people" / "lin-manuel-miranda.png"


def pin(cores: int) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    import cv2

    cv2.setNumThreads(cores)


def make_clips(workdir: Path) -> dict[str, Path]:
    """The clip played 4 times (640x360), and once upscaled to 1280x720."""
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    out = {}
    for name, size, repeat in (("640x360", (640, 360), 4), ("1280x720", (1280, 720), 1)):
        path = workdir / f"hamilton-{name}.mp4"
        w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
        for _ in range(repeat):
            for f in frames:
                w.write(f if f.shape[1] == size[0] else cv2.resize(f, size, interpolation=cv2.INTER_CUBIC))
        w.release()
        out[name] = path
    return out


def run_vigil(clip: str, cores: int, *, before: bool = False) -> dict[str, Any]:
    """The default pipeline; ``before``: as it was before the ONNX issue (see the module's doc)."""
    pin(cores)
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.gallery import enroll, galleries
    from vigil.video.watch import watch
    from vigil.vision.image import load_image

    with tempfile.TemporaryDirectory() as tmp:
        variant: dict[str, Any] = {}
        if before:
            variant = {
                "embedder": "dlib-resnet",
                "video_detect_threads": 1,
                "video_full_frame_every": 1,
                "video_detect_gray": False,
            }
        app = App(Settings(data_dir=Path(tmp), threads=cores, **variant))
        spec = galleries.validate_spec(
            name="bench",
            kind="watchlist",
            purpose="benchmark",
            legal_basis="benchmark",
            authorized_by="bench",
            expires_on=date.today() + timedelta(days=1),
        )
        galleries.create_gallery(app, spec)
        enroll.enroll(app, "bench", "Lin-Manuel Miranda", [load_image(PORTRAIT)])
        app.engine  # noqa: B018 - load the models before the clock starts
        summary = watch(app, clip)
        app.close()
    return summary


def run_baseline(clip: str, cores: int) -> dict[str, Any]:
    pin(cores)
    import cv2
    import face_recognition  # type: ignore[import-not-found]
    import numpy as np

    known = face_recognition.face_encodings(face_recognition.load_image_file(str(PORTRAIT)))
    cap = cv2.VideoCapture(clip)
    frames = hits = 0
    started = time.monotonic()
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])  # dlib needs contiguous memory
        locations = face_recognition.face_locations(rgb)
        for encoding in face_recognition.face_encodings(rgb, locations):
            hits += any(face_recognition.compare_faces(known, encoding, tolerance=0.6))
        frames += 1
    elapsed = time.monotonic() - started
    return {
        "frames": frames,
        "fps": round(frames / elapsed, 2),
        "seconds": round(elapsed, 3),
        "matched_faces": hits,
    }


def child(kind: str, clip: str, cores: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, clip, str(cores)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {clip} on {cores} core(s) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "video.json")
    parser.add_argument("--quick", action="store_true", help="skip the 1280x720 and baseline two-core runs")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CLIP", "CORES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, clip, cores = args.child
        if kind == "baseline":
            print(json.dumps(run_baseline(clip, int(cores))))
        else:
            print(json.dumps(run_vigil(clip, int(cores), before=kind == "vigil-before")))
        return
    if not CLIP.is_file():
        sys.exit(f"shared data not found at {SHARED}; set VIGIL_SHARED_DATA")
    from rich.console import Console
    from rich.table import Table

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp))
        plan = [
            ("vigil", "640x360", 1),
            ("vigil", "640x360", 2),
            ("vigil-before", "640x360", 1),
            ("vigil-before", "640x360", 2),
            ("baseline", "640x360 (1x)", 1),
        ]
        if not args.quick:
            plan += [("vigil", "1280x720", 1), ("vigil", "1280x720", 2)]
        for kind, name, cores in plan:
            clip = str(CLIP) if kind == "baseline" else str(clips[name])
            Console(stderr=True).print(f"running {kind} on {name}, {cores} core(s) ...")
            result = child(kind, clip, cores)
            rows.append({"pipeline": kind, "clip": name, "cores": cores, **result})
    base = next(r["fps"] for r in rows if r["pipeline"] == "baseline")
    before = {(r["clip"], r["cores"]): r["fps"] for r in rows if r["pipeline"] == "vigil-before"}
    table = Table(title="vigil watch: frames per second (hamilton clip)")
    for col in (
        "pipeline",
        "clip",
        "cores",
        "frames",
        "fps",
        "x baseline",
        "x before",
        "detect ms",
        "embed ms",
        "alarms",
        "alarm latency p50/p95 ms",
    ):
        table.add_column(col)
    for r in rows:
        stages = r.get("stage_ms_per_frame", {})
        lat = r.get("alarm_latency_ms") or {}
        r["ratio_to_baseline"] = round(r["fps"] / base, 2)
        same_cores_before = before.get((r["clip"], r["cores"])) if r["pipeline"] == "vigil" else None
        r["ratio_to_before"] = round(r["fps"] / same_cores_before, 2) if same_cores_before else None
        table.add_row(
            r["pipeline"],
            r["clip"],
            str(r["cores"]),
            str(r["frames"]),
            f"{r['fps']:.1f}",
            f"{r['ratio_to_baseline']:.1f}",
            f"{r['ratio_to_before']:.2f}" if r["ratio_to_before"] else "",
            f"{stages.get('detect', 0):.1f}" if stages else "",
            f"{stages.get('embed', 0):.1f}" if stages else "",
            str(r.get("alarms", r.get("matched_faces", ""))),
            f"{lat.get('p50', '')}/{lat.get('p95', '')}" if lat else "",
        )
    Console(width=160).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "video",
        "date": date.today().isoformat(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2))
    Console().print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
