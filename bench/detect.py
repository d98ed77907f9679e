"""Detection benchmark: frames per second and the smallest face found, YuNet against dlib HOG.

    python bench/detect.py [--quick] [--threads 2] [--out bench/results/detect.json]

- **Small faces.** Synthetic frames: real LFW faces (lfw-dev), their box (YuNet-n's on the LFW photo)
  scaled to 16, 20, 24, 32, 48 and 64 px wide, pasted with feathered edges on a jittered grid into
  frames of the hamilton clip upscaled to 640x360, 1920x1080 and 3840x2160 (with a little noise).
  The clip's own faces (found at 4x on the 640x360 frame) are neither hits nor false detections.
  A detection finds a pasted face when each box holds the other's centre and their sizes are within
  2x. Per detector: recall per face size, false detections per frame, milliseconds per frame, at the
  video threshold (0.5) and the photo threshold (0.8).
- **Photos.** lfw-dev (a fixed sample) and people/: how often the photo's face is missed, and how
  many other detections there are per 100 photos (most are real faces in the background: by eye,
  at 0.8 about 1 in 40 is not a face, at 0.5-0.8 about 1 in 4), by ``min_confidence``.
- **Thumbnails.** The lfw-dev sample shrunk to 40-250 px: YuNet-n at 1x against upsampled 2x (what
  ``upsample_below_px`` buys).

Detectors: dlib HOG as `vigil watch` runs it (frame scaled to 960 px, grey) and as photos get it
(``build_detector``); YuNet-s 2023mar (fixed 640x640 input) letterboxed, and in 640 px tiles at
native resolution; YuNet-n (dynamic input) as `vigil watch` runs it (``video_detector``, 960 px), at
native resolution, in 640 px tiles at native resolution, and at 2x (640x360 only).

Prints tables and writes JSON. Needs the shared data and models (``VIGIL_SHARED_DATA``, default
``../shared/data``, models beside it in ``models/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
MODELS = SHARED.parent / "models"
YUNET_S = MODELS / "face_detection_yunet_2023mar.onnx"
YUNET_N = MODELS / "yunet_n_dynamic.onnx"
CLIP = SHARED / "video" / "short_hamilton_clip.mp4"
FACE_SIZES = (16, 20, 24, 32, 48, 64)
RESOLUTIONS = {"640x360": (640, 360), "1920x1080": (1920, 1080), "3840x2160": (3840, 2160)}
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
THUMBNAIL_SIDES = (40, 50, 64, 100, 250)
VIDEO_THRESHOLD, PHOTO_THRESHOLD = 0.5, 0.8
JPEG_QUALITY = 70
"""Synthetic frames go through JPEG at this quality (compression artefacts, as in a video stream)."""
TIMING_ROUNDS = 5
"""Detectors are timed in turns, this many rounds, the best round per frame kept (the machine is shared)."""

Image = npt.NDArray[np.uint8]
Boxes = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Face:
    """A source face: an LFW photo and its face box (xyxy)."""

    bgr: Image
    xyxy: Boxes


@dataclass(frozen=True)
class Scene:
    """A synthetic frame, the pasted faces' boxes, and the background's own faces (ignored)."""

    bgr: Image
    truth: Boxes
    ignore: Boxes


def read(path: Path) -> Image:
    import cv2

    bgr = cv2.imread(str(path))
    if bgr is None:
        sys.exit(f"cannot read {path}")
    return np.asarray(bgr, np.uint8)


def lfw_sample(count: int) -> list[Path]:
    paths = sorted((SHARED / "lfw-dev").glob("*/*.jpg"))
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def central_face(xyxy: Boxes, size_wh: tuple[int, int]) -> int | None:
    """Index of the detection that is the photo's subject (near the centre, 25-80 % of its width)."""
    w, h = size_wh
    if not len(xyxy):
        return None
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    dist = np.hypot(centre[:, 0] - w / 2, centre[:, 1] - h / 2)
    width = xyxy[:, 2] - xyxy[:, 0]
    ok = (dist < 0.15 * w) & (width > 0.25 * w) & (width < 0.8 * w)
    return int(np.argmin(np.where(ok, dist, np.inf))) if ok.any() else None


def source_faces(count: int, threads: int) -> list[Face]:
    """LFW photos with their subject's face box, found by YuNet-n at native resolution."""
    from vigil.vision.onnx.yunet import YuNetDetector

    finder = YuNetDetector.load(YUNET_N, threads=threads, min_confidence=0.7)
    faces = []
    for path in lfw_sample(count * 2):
        bgr = read(path)
        found = finder.detect(bgr)
        i = central_face(found.xyxy, (bgr.shape[1], bgr.shape[0]))
        if i is not None:
            faces.append(Face(bgr, found.xyxy[i]))
        if len(faces) == count:
            break
    return faces


def backgrounds(threads: int) -> list[tuple[Image, Boxes]]:
    """Two hamilton frames (640x360) and their own faces (YuNet-n at 4x and dlib HOG upsampled)."""
    import cv2

    from vigil.vision.dlib.detector import DlibDetector
    from vigil.vision.onnx.yunet import YuNetDetector

    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    for i in range(101):
        ok, frame = cap.read()
        if not ok:
            sys.exit(f"cannot read {CLIP}")
        if i in (0, 100):
            frames.append(np.asarray(frame, np.uint8))
    cap.release()
    finder = YuNetDetector.load(YUNET_N, threads=threads, min_confidence=0.3, max_side_px=4000)
    hog = DlibDetector(max_side_px=4000, upsample_below_px=4000, min_confidence=0.5)
    out = []
    for frame in frames:
        big = cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        own = np.concatenate([finder.detect(big).xyxy / 4, hog.detect(frame).xyxy])
        out.append((frame, own.astype(np.float32)))
    return out


def paste(canvas: Image, face: Face, size_px: int, x: int, y: int) -> Boxes:
    """``face`` scaled so its box is ``size_px`` wide, pasted with its box's top-left at (x, y);
    the pasted box in ``canvas`` (xyxy)."""
    import cv2

    bx1, by1, bx2, by2 = face.xyxy
    scale = size_px / (bx2 - bx1)
    margin = 0.45 * (bx2 - bx1)
    h, w = face.bgr.shape[:2]
    cx1, cy1 = max(0, int(bx1 - margin)), max(0, int(by1 - margin))
    cx2, cy2 = min(w, int(bx2 + margin)), min(h, int(by2 + margin))
    crop = face.bgr[cy1:cy2, cx1:cx2]
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = np.zeros(small.shape[:2], np.float32)
    cv2.ellipse(
        mask, (size[0] // 2, size[1] // 2), (size[0] * 9 // 20, size[1] * 9 // 20), 0, 0, 360, 1.0, -1
    )
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, size[0] / 12))[..., None]
    ox, oy = x - round((bx1 - cx1) * scale), y - round((by1 - cy1) * scale)
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(canvas.shape[1], ox + size[0]), min(canvas.shape[0], oy + size[1])
    part = canvas[y0:y1, x0:x1].astype(np.float32)
    sub, m = small[y0 - oy : y1 - oy, x0 - ox : x1 - ox], mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    canvas[y0:y1, x0:x1] = np.clip(part * (1 - m) + sub * m, 0, 255).astype(np.uint8)
    top = np.array([x, y], np.float32)
    return np.concatenate([top, top + np.array([bx2 - bx1, by2 - by1], np.float32) * scale])


def scenes(
    size_wh: tuple[int, int], size_px: int, faces: list[Face], bgs: list[tuple[Image, Boxes]], per_size: int
) -> list[Scene]:
    """Frames holding about ``per_size`` pasted faces of ``size_px`` in all (at most 8 frames)."""
    import cv2

    w, h = size_wh
    rng = np.random.default_rng(size_px * 1000 + w)
    cell = max(3 * size_px, 40)
    cols, rows = max(1, (w - size_px) // cell), max(1, (h - 2 * size_px) // cell)
    per_frame = min(cols * rows, 30)
    out = []
    used = 0
    for k in range(min(8, -(-per_size // per_frame))):
        frame0, own0 = bgs[k % len(bgs)]
        factor = w / frame0.shape[1]
        canvas = cv2.resize(frame0, (w, h), interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)
        canvas = np.clip(canvas + rng.normal(0, 2.0, canvas.shape), 0, 255).astype(np.uint8)
        own = own0 * factor
        cells = rng.permutation(cols * rows)
        truth = []
        for c in cells:
            if len(truth) == per_frame:
                break
            x = int(c % cols * cell + rng.integers(0, cell - size_px))
            y = int(c // cols * cell + size_px // 2 + rng.integers(0, cell - size_px))
            spot = np.array([x - size_px, y - size_px, x + 2 * size_px, y + 2.5 * size_px], np.float32)
            if len(own) and overlaps(spot[None], own).any():
                continue
            truth.append(paste(canvas, faces[used % len(faces)], size_px, x, y))
            used += 1
        ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        canvas = np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), np.uint8) if ok else canvas
        out.append(Scene(canvas, np.asarray(truth, np.float32).reshape(-1, 4), own.astype(np.float32)))
    return out


def overlaps(a: Boxes, b: Boxes) -> npt.NDArray[np.bool_]:
    """(len(a), len(b)): the boxes intersect."""
    return (
        (a[:, None, 0] < b[None, :, 2])
        & (b[None, :, 0] < a[:, None, 2])
        & (a[:, None, 1] < b[None, :, 3])
        & (b[None, :, 1] < a[:, None, 3])
    )


def same_face(a: Boxes, b: Boxes) -> npt.NDArray[np.bool_]:
    """(len(a), len(b)): each box holds the other's centre and their sizes are within 2x."""
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    inside_a = (cb[None, :, :] >= a[:, None, :2]).all(-1) & (cb[None, :, :] <= a[:, None, 2:]).all(-1)
    inside_b = (ca[:, None, :] >= b[None, :, :2]).all(-1) & (ca[:, None, :] <= b[None, :, 2:]).all(-1)
    sa, sb = (a[:, 2] - a[:, 0])[:, None], (b[:, 2] - b[:, 0])[None, :]
    ratio = np.maximum(sa, 1e-3) / np.maximum(sb, 1e-3)
    return inside_a & inside_b & (ratio > 0.5) & (ratio < 2.0)


def count(found: Boxes, score: npt.NDArray[np.float32], scene: Scene) -> tuple[int, int]:
    """(pasted faces found, false detections); detections on the background's own faces are neither."""
    order = np.argsort(-score)
    found = found[order]
    hit = np.zeros(len(scene.truth), bool)
    false = 0
    match = same_face(found, scene.truth) if len(scene.truth) else np.zeros((len(found), 0), bool)
    near_own = overlaps(found, scene.ignore).any(1) if len(scene.ignore) else np.zeros(len(found), bool)
    for i in range(len(found)):
        free = match[i] & ~hit
        if free.any():
            hit[np.flatnonzero(free)[0]] = True
        elif not match[i].any() and not near_own[i]:
            false += 1
    return int(hit.sum()), false


Detect = Callable[[Image], Any]


def detectors(threads: int, resolution: str) -> dict[str, Detect]:
    from vigil.core.config import Settings
    from vigil.video.detection import ScaledDetector, video_detector
    from vigil.vision.engine import build_detector
    from vigil.vision.onnx.yunet import YuNetDetector, yunet_from_settings

    settings = Settings(threads=threads, video_min_confidence=VIDEO_THRESHOLD)
    low = {"threads": threads, "min_confidence": VIDEO_THRESHOLD}
    native = {**low, "max_side_px": 100_000}
    yunet_n_video = video_detector(
        settings.model_copy(update={"detector": "yunet", "onnx_detector_path": YUNET_N})
    )
    out: dict[str, Detect] = {
        "dlib HOG, vigil watch (960 px, grey)": video_detector(settings).detect,
        "dlib HOG, photo settings": build_detector(
            settings.model_copy(update={"detect_min_confidence": 0.5})
        ).detect,
        "YuNet-s 2023mar (letterbox 640)": YuNetDetector.load(YUNET_S, **low).detect,
        "YuNet-s 2023mar, 640 tiles at native": YuNetDetector.load(YUNET_S, tile_px=640, **native).detect,
        f"YuNet-n, vigil watch ({yunet_n_video.name})": yunet_n_video.detect,
        "YuNet-n, photo settings (1600 px)": yunet_from_settings(
            YUNET_N, settings.model_copy(update={"detect_min_confidence": VIDEO_THRESHOLD})
        ).detect,
        "YuNet-n at native": YuNetDetector.load(YUNET_N, **native).detect,
        "YuNet-n, 640 tiles at native": YuNetDetector.load(YUNET_N, tile_px=640, **native).detect,
    }
    if resolution == "640x360":
        out["YuNet-n at 2x"] = ScaledDetector(YuNetDetector.load(YUNET_N, **native), 1280).detect
    return out


def bench_small_faces(threads: int, quick: bool) -> list[dict[str, Any]]:
    faces = source_faces(60 if quick else 150, threads)
    bgs = backgrounds(threads)
    rows = []
    for resolution, size_wh in RESOLUTIONS.items():
        if quick and resolution == "3840x2160":
            continue
        per_size = 12 if quick or resolution == "3840x2160" else 30
        frames = {s: scenes(size_wh, s, faces, bgs, per_size) for s in FACE_SIZES}
        dets = detectors(threads, resolution)
        ms = frame_ms(dets, [group[0].bgr for group in frames.values()])
        for name, detect in dets.items():
            print(f"  {resolution} {name} ...", file=sys.stderr, flush=True)
            tally = {t: {"recall": {}, "false": 0} for t in (VIDEO_THRESHOLD, PHOTO_THRESHOLD)}
            n_frames = 0
            for size, group in frames.items():
                hits = dict.fromkeys(tally, 0)
                total = 0
                for scene in group:
                    found = detect(scene.bgr)
                    total += len(scene.truth)
                    for thr in tally:
                        keep = found.score >= thr
                        hit, false = count(found.xyxy[keep], found.score[keep], scene)
                        hits[thr] += hit
                        tally[thr]["false"] += false
                n_frames += len(group)
                for thr in tally:
                    tally[thr]["recall"][size] = round(hits[thr] / max(total, 1), 3)
            for thr, t in tally.items():
                recall = t["recall"]
                rows.append(
                    {
                        "resolution": resolution,
                        "detector": name,
                        "min_confidence": thr,
                        "ms_per_frame": round(ms[name], 1),
                        "fps": round(1000 / ms[name], 2),
                        "recall": recall,
                        "smallest_px_recall_0.9": next((s for s in FACE_SIZES if recall[s] >= 0.9), None),
                        "false_per_frame": round(t["false"] / n_frames, 2),
                        "frames": n_frames,
                    }
                )
    return rows


def frame_ms(dets: dict[str, Detect], frames: list[Image]) -> dict[str, float]:
    """Milliseconds per frame of each detector: timed in turns, best of the rounds per frame, median."""
    best = {name: [float("inf")] * len(frames) for name in dets}
    for detect in dets.values():
        detect(frames[0])  # warm up
    for _ in range(TIMING_ROUNDS):
        for name, detect in dets.items():
            for i, frame in enumerate(frames):
                t0 = time.perf_counter()
                detect(frame)
                best[name][i] = min(best[name][i], time.perf_counter() - t0)
    return {name: statistics.median(times) * 1000 for name, times in best.items()}


def bench_photos(threads: int, quick: bool) -> list[dict[str, Any]]:
    from vigil.core.config import Settings
    from vigil.vision.engine import build_detector
    from vigil.vision.onnx.yunet import YuNetDetector

    settings = Settings(threads=threads, detect_min_confidence=0.5)
    lowest = {"threads": threads, "min_confidence": 0.3}
    dets: dict[str, Detect] = {
        "dlib HOG (photo settings)": build_detector(settings).detect,
        "YuNet-s 2023mar (letterbox 640)": YuNetDetector.load(YUNET_S, **lowest).detect,
        "YuNet-n (photo settings: 2x below 160 px)": YuNetDetector.load(YUNET_N, **lowest).detect,
        "YuNet-n, 2x below 800 px (dlib's)": YuNetDetector.load(
            YUNET_N, upsample_below_px=800, **lowest
        ).detect,
    }
    photos = [(p, 1) for p in lfw_sample(400 if quick else 1500)]
    people = sorted((SHARED / "people").iterdir())
    photos += [(p, 2 if p.name == "two_people.jpg" else 1) for p in people]
    rows = []
    for name, detect in dets.items():
        print(f"  photos {name} ...", file=sys.stderr, flush=True)
        results = []
        t0 = time.perf_counter()
        for path, faces in photos:
            bgr = read(path)
            found = detect(bgr)
            results.append((path, faces, found, (bgr.shape[1], bgr.shape[0])))
        ms = (time.perf_counter() - t0) / len(photos) * 1000
        for thr in THRESHOLDS:
            lfw_missed = lfw_extra = people_missed = people_extra = lfw_n = 0
            for path, faces, found, size in results:
                kept = found[found.score >= thr]
                if path.parent.name == "people":
                    people_missed += max(0, faces - len(kept))
                    people_extra += max(0, len(kept) - faces)
                    continue
                lfw_n += 1
                centre = central_face(kept.xyxy, size)
                lfw_missed += centre is None
                lfw_extra += len(kept) - (centre is not None)
            rows.append(
                {
                    "detector": name,
                    "min_confidence": thr,
                    "lfw_photos": lfw_n,
                    "lfw_missed_pct": round(100 * lfw_missed / lfw_n, 2),
                    "lfw_other_per_100": round(100 * lfw_extra / lfw_n, 2),
                    "people_missed": people_missed,
                    "people_extra": people_extra,
                    "ms_per_photo": round(ms, 1),
                }
            )
    return rows


def bench_thumbnails(threads: int, quick: bool) -> list[dict[str, Any]]:
    """lfw-dev photos shrunk to thumbnails (the subject's face 40 % of the side): YuNet-n at 1x and 2x."""
    import cv2

    from vigil.vision.onnx.yunet import YuNetDetector

    photos = [read(p) for p in lfw_sample(200 if quick else 600)]
    rows = []
    for side in THUMBNAIL_SIDES:
        small = [cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA) for p in photos]
        for scale, upsample in (("1x", 0), ("2x", 100_000)):
            for thr in (VIDEO_THRESHOLD, PHOTO_THRESHOLD):
                detect = YuNetDetector.load(
                    YUNET_N, threads=threads, min_confidence=thr, upsample_below_px=upsample
                ).detect
                t0 = time.perf_counter()
                found = [detect(b) for b in small]
                ms = (time.perf_counter() - t0) / len(small) * 1000
                missed = sum(central_face(f.xyxy, (side, side)) is None for f in found)
                rows.append(
                    {
                        "side_px": side,
                        "scale": scale,
                        "min_confidence": thr,
                        "missed_pct": round(100 * missed / len(small), 2),
                        "other_per_100": round(
                            100 * (sum(map(len, found)) - len(small) + missed) / len(small), 1
                        ),
                        "ms_per_photo": round(ms, 2),
                    }
                )
    return rows


def print_tables(
    small: list[dict[str, Any]], photos: list[dict[str, Any]], thumbs: list[dict[str, Any]]
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table(title="small faces: recall by face width (px), false detections per frame, speed")
    for col in (
        "resolution",
        "detector",
        "conf",
        *map(str, FACE_SIZES),
        "smallest",
        "false/frame",
        "ms",
        "fps",
    ):
        table.add_column(col)
    for r in small:
        table.add_row(
            r["resolution"],
            r["detector"],
            str(r["min_confidence"]),
            *[f"{r['recall'][s]:.2f}" for s in FACE_SIZES],
            str(r["smallest_px_recall_0.9"] or "-"),
            str(r["false_per_frame"]),
            str(r["ms_per_frame"]),
            str(r["fps"]),
        )
    console.print(table)
    table = Table(title="photos: lfw-dev subject missed, other detections, people/ errors")
    for col in ("detector", "conf", "lfw missed %", "lfw others /100", "people missed", "people extra", "ms"):
        table.add_column(col)
    for r in photos:
        table.add_row(
            r["detector"],
            str(r["min_confidence"]),
            str(r["lfw_missed_pct"]),
            str(r["lfw_other_per_100"]),
            str(r["people_missed"]),
            str(r["people_extra"]),
            str(r["ms_per_photo"]),
        )
    console.print(table)
    table = Table(title="thumbnails: lfw-dev shrunk, YuNet-n at 1x and upsampled 2x")
    for col in ("side px", "scale", "conf", "missed %", "others /100", "ms"):
        table.add_column(col)
    for r in thumbs:
        table.add_row(
            *[
                str(r[k])
                for k in ("side_px", "scale", "min_confidence", "missed_pct", "other_per_100", "ms_per_photo")
            ]
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "detect.json")
    parser.add_argument("--quick", action="store_true", help="fewer faces and photos, no 3840x2160")
    parser.add_argument("--threads", type=int, default=2, help="threads per detector (0: all cores)")
    parser.add_argument("--only", choices=["small", "photos", "thumbnails"], action="append")
    args = parser.parse_args()
    if not (SHARED / "lfw-dev").is_dir() or not YUNET_N.is_file():
        sys.exit(f"shared data or models not found at {SHARED} / {MODELS}; set VIGIL_SHARED_DATA")
    import cv2

    cv2.setNumThreads(max(1, args.threads))
    parts = args.only or ["small", "photos", "thumbnails"]
    small = bench_small_faces(args.threads, args.quick) if "small" in parts else []
    photos = bench_photos(args.threads, args.quick) if "photos" in parts else []
    thumbs = bench_thumbnails(args.threads, args.quick) if "thumbnails" in parts else []
    print_tables(small, photos, thumbs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "detect",
        "date": date.today().isoformat(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "threads": args.threads,
        "quick": args.quick,
        "small_faces": small,
        "photos": photos,
        "thumbnails": thumbs,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
