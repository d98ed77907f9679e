"""Core benchmark: detection, embedding, 1:N search and enrolment, each against a baseline.

    python bench/core.py [--quick] [--max-n 10000000] [--out bench/results/core.json]

- MMOD-CNN detection at 640x360: dlib's network converted to ONNX against dlib's own.
- Detection frames per second on the hamilton clip's frames at 640x360, 1280x720 and 1920x1080, with
  the detector as `vigil watch` runs it (frame scaled to a long side of 960 px) and as still
  photos get it (upsampled below 800 px), against ``face_recognition.face_locations`` (HOG, upsample 1).
- Embeddings per second at batch 1, 16 and 64: the dlib ResNet converted to ONNX on onnxruntime
  (vigil's default), the same model run by dlib (the reference), and ``face_recognition.face_encodings``.
- 1:N search: synthetic 128-d unit vectors (identities as cluster centres, templates and queries as
  noisy copies, so that genuine scores look like real ones), at 10k, 100k, 1M and 10M templates.
  Exact search (FAISS ``IndexFlatIP``) and approximate (``IVF{sqrt n},Flat``, nprobe 32) with recall@1
  against exact; latency per single query p50/p99; memory of the index. Baseline: the numpy distance
  loop of ``face_recognition.face_distance`` (up to 1M).
- Enrolment throughput: photos per second through ``vigil``'s enrolment service (detect, embed, store
  photo, template and index) against ``face_recognition`` load + encode (which stores nothing).

All on this machine's cores; every figure is a median (or the percentile named) from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def have_baseline() -> bool:
    try:
        import face_recognition  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def frames_at(sizes: list[tuple[int, int]], count: int) -> dict[str, list[np.ndarray]]:
    import cv2

    cap = cv2.VideoCapture(str(SHARED / "video" / "short_hamilton_clip.mp4"))
    raw = []
    i = 0
    while len(raw) < count:
        ok, f = cap.read()
        if not ok:
            break
        if i % 9 == 0:
            raw.append(f)
        i += 1
    return {
        f"{w}x{h}": [
            f if f.shape[1] == w else cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in raw
        ]
        for w, h in sizes
    }


def bench_detection(quick: bool) -> list[dict[str, Any]]:
    from vigil.core.config import Settings
    from vigil.video.detection import video_detector
    from vigil.vision.engine import build_detector

    settings = Settings()
    detectors = {
        "vigil watch (frame scaled to 960 px)": video_detector(settings),
        "vigil photo": build_detector(settings),
    }
    frames = frames_at([(640, 360), (1280, 720), (1920, 1080)], 6 if quick else 12)
    rows = []
    base = have_baseline()
    with tempfile.TemporaryDirectory() as tmp:  # MMOD-CNN at 640x360: dlib's own and the ONNX conversion
        mmod_settings = {"detect_upsample_below_px": 0, "data_dir": Path(tmp)}
        mmods = {
            "MMOD on onnxruntime (VIGIL_DETECTOR=mmod)": build_detector(
                settings.model_copy(update={"detector": "mmod", **mmod_settings})
            ),
            "MMOD by dlib (VIGIL_DETECTOR=mmod-dlib)": build_detector(
                settings.model_copy(update={"detector": "mmod-dlib", **mmod_settings})
            ),
        }
        imgs = frames["640x360"][:4]
        for name, det in mmods.items():
            t = median_time(lambda det=det, imgs=imgs: [det.detect(f) for f in imgs], 1)
            rows.append({"what": "detect", "size": "640x360", "impl": name, "fps": round(len(imgs) / t, 2)})
    for size, imgs in frames.items():
        for name, det in detectors.items():
            t = median_time(lambda det=det, imgs=imgs: [det.detect(f) for f in imgs], 1 if quick else 3)
            rows.append({"what": "detect", "size": size, "impl": name, "fps": round(len(imgs) / t, 2)})
        if base:
            import face_recognition

            rgbs = [np.ascontiguousarray(f[:, :, ::-1]) for f in imgs]
            t = median_time(lambda rgbs=rgbs: [face_recognition.face_locations(r) for r in rgbs], 1)
            rows.append(
                {
                    "what": "detect",
                    "size": size,
                    "impl": "face_recognition (baseline)",
                    "fps": round(len(imgs) / t, 2),
                }
            )
    return rows


def bench_embedding(quick: bool) -> list[dict[str, Any]]:
    from vigil.core.config import Settings
    from vigil.vision.engine import build_engine
    from vigil.vision.image import load_image

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        engines = {
            "vigil dlib-onnx (onnxruntime)": build_engine(settings),
            "vigil dlib-resnet (dlib, reference)": build_engine(
                settings.model_copy(update={"embedder": "dlib-resnet"})
            ),
        }
        bgr = load_image(SHARED / "people" / "obama.jpg").bgr
        face = engines["vigil dlib-onnx (onnxruntime)"].detect(bgr)[:1]
        rows = []
        for batch in (1, 16, 64):
            if batch == 64 and quick:
                continue
            faces = face[np.zeros(batch, np.int64)]
            for name, engine in engines.items():
                t = median_time(
                    lambda faces=faces, engine=engine: engine.embed(bgr, faces), 2 if quick else 5
                )
                rows.append({"what": "embed", "batch": batch, "impl": name, "per_s": round(batch / t, 2)})
            if have_baseline():
                import face_recognition

                rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                x1, y1, x2, y2 = (int(v) for v in face.xyxy[0])
                locs = [(y1, x2, y2, x1)] * batch
                t = median_time(
                    lambda locs=locs, rgb=rgb: face_recognition.face_encodings(rgb, locs), 2 if quick else 3
                )
                rows.append(
                    {
                        "what": "embed",
                        "batch": batch,
                        "impl": "face_recognition (baseline)",
                        "per_s": round(batch / t, 2),
                    }
                )
    return rows


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def synthetic_gallery(n: int, d: int, rng: np.random.Generator, chunk: int = 1_000_000) -> np.ndarray:
    """n unit vectors: identities as random centres, each template a noisy copy (cosine ~0.93)."""
    out = np.empty((n, d), np.float32)
    for start, block in synthetic_chunks(n, d, rng, chunk):
        out[start : start + len(block)] = block
    return out


def synthetic_chunks(
    n: int, d: int, rng: np.random.Generator, chunk: int = 1_000_000
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`synthetic_gallery` a chunk at a time: (first row, rows), for galleries too big for memory."""
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        centres = rng.standard_normal((stop - start, d), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        noise = rng.standard_normal((stop - start, d), dtype=np.float32) * (0.38 / np.sqrt(d))
        v = centres + noise
        yield start, v / np.linalg.norm(v, axis=1, keepdims=True)


def noisy_queries(gallery: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    q = gallery[rows] + rng.standard_normal((len(rows), gallery.shape[1]), dtype=np.float32) * (
        0.38 / np.sqrt(gallery.shape[1])
    )
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def bench_search(sizes: list[int], quick: bool) -> list[dict[str, Any]]:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        rows += _search_one(n, rng)
        if quick and n >= 1_000_000:
            break
    return rows


def _latencies(queries: np.ndarray, search: Callable[[np.ndarray], int]) -> tuple[list[float], np.ndarray]:
    """Milliseconds per single query, and each query's top row."""
    lat, top = [], []
    for q in queries:
        t = time.perf_counter()
        top.append(search(q[None, :]))
        lat.append(1000 * (time.perf_counter() - t))
    return lat, np.array(top)


def _search_one(n: int, rng: np.random.Generator, d: int = 128) -> list[dict[str, Any]]:
    import faiss

    rows = []
    gallery = synthetic_gallery(n, d, rng)
    n_q = 200 if n <= 1_000_000 else 40
    qrows = rng.choice(n, size=n_q, replace=False)
    queries = noisy_queries(gallery, qrows, rng)

    before = rss_bytes()
    flat = faiss.IndexFlatIP(d)
    flat.add(gallery)
    mem_flat = rss_bytes() - before
    lat, exact_top = _latencies(queries, lambda q: int(flat.search(q, 1)[1][0, 0]))
    rows.append(
        _search_row(n, "exact (FAISS FlatIP)", lat, mem_flat, float(np.mean(exact_top == qrows)), 1.0)
    )
    rows[-1]["index_mb"] = round(n * d * 4 / 2**20, 1)
    flat.reset()  # free its memory before the next index

    nlist = int(min(16384, max(16, np.sqrt(n))))
    before = rss_bytes()
    t0 = time.perf_counter()
    ivf = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(gallery[rng.choice(n, size=min(n, 60 * nlist), replace=False)])
    ivf.add(gallery)
    build_s = time.perf_counter() - t0
    mem_ivf = rss_bytes() - before
    ivf.nprobe = 32
    lat, approx_top = _latencies(queries, lambda q: int(ivf.search(q, 1)[1][0, 0]))
    row = _search_row(
        n,
        f"approximate (IVF{nlist},Flat nprobe 32)",
        lat,
        mem_ivf,
        float(np.mean(approx_top == qrows)),
        float(np.mean(approx_top == exact_top)),
    )
    row["build_s"] = round(build_s, 1)
    row["index_mb"] = round((n * (d * 4 + 8) + nlist * d * 4) / 2**20, 1)
    rows.append(row)
    ivf.reset()

    if have_baseline() and n <= 1_000_000:
        import face_recognition

        lat, base_top = _latencies(
            queries, lambda q: int(np.argmin(face_recognition.face_distance(gallery, q[0])))
        )
        rows.append(
            _search_row(
                n,
                "face_recognition.face_distance (baseline)",
                lat,
                0,
                float(np.mean(base_top == qrows)),
                float(np.mean(base_top == exact_top)),
            )
        )
    return rows


def _search_row(n: int, impl: str, lat: list[float], mem: int, hit: float, recall: float) -> dict[str, Any]:
    return {
        "what": "search",
        "templates": n,
        "impl": impl,
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "rss_growth_mb": round(mem / 2**20, 1),
        "top1_is_source": round(hit, 4),
        "recall_at_1_vs_exact": round(recall, 4),
    }


def bench_enrolment(quick: bool) -> list[dict[str, Any]]:
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.gallery import enroll, galleries
    from vigil.vision.image import load_image

    lfw = SHARED / "lfw-dev"
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[: 20 if quick else 60]
    photos = [sorted(p.glob("*.jpg"))[0] for p in people]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        app = App(Settings(data_dir=Path(tmp)))
        galleries.create_gallery(app, galleries.validate_spec(name="bench", kind="reference"))
        app.engine  # noqa: B018 - load the models first
        done = 0
        t = time.perf_counter()
        for person, photo in zip(people, photos, strict=True):
            try:
                enroll.enroll(app, "bench", person.name, [load_image(photo)], largest=True)
                done += 1
            except Exception:
                pass
        elapsed = time.perf_counter() - t
        app.close()
    rows.append(
        {
            "what": "enrol",
            "impl": "vigil enrol (detect, embed, store, index)",
            "photos": done,
            "per_s": round(done / elapsed, 2),
        }
    )
    if have_baseline():
        import face_recognition

        t = time.perf_counter()
        for photo in photos:
            face_recognition.face_encodings(face_recognition.load_image_file(str(photo)))
        elapsed = time.perf_counter() - t
        rows.append(
            {
                "what": "enrol",
                "impl": "face_recognition load + encode (baseline, stores nothing)",
                "photos": len(photos),
                "per_s": round(len(photos) / elapsed, 2),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "core.json")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, search up to 1M")
    parser.add_argument("--max-n", type=int, default=10_000_000, help="largest synthetic gallery")
    parser.add_argument("--only", choices=["detect", "embed", "search", "enrol"], action="append")
    args = parser.parse_args()
    if not (SHARED / "people").is_dir():
        sys.exit(f"shared data not found at {SHARED}; set VIGIL_SHARED_DATA")
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    if not have_baseline():
        console.print(
            "[yellow]face_recognition is not installed: no baseline (pip install "
            "face_recognition==1.3.0 --no-deps)[/]"
        )
    parts = args.only or ["detect", "embed", "search", "enrol"]
    sizes = [n for n in (10_000, 100_000, 1_000_000, 10_000_000) if n <= args.max_n]
    results: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        console.print(f"[bold]{part}[/] ...")
        fn = {
            "detect": lambda: bench_detection(args.quick),
            "embed": lambda: bench_embedding(args.quick),
            "search": lambda: bench_search(sizes, args.quick),
            "enrol": lambda: bench_enrolment(args.quick),
        }[part]
        results[part] = fn()
        rows = results[part]
        table = Table(title=part)
        keys = [k for k in rows[0] if k != "what"]
        for k in dict.fromkeys(k for r in rows for k in r if k != "what"):
            if k not in keys:
                keys.append(k)
        for k in keys:
            table.add_column(k)
        for r in rows:
            table.add_row(*[str(r.get(k, "")) for k in keys])
        console.print(table)
    ratios = ratios_to_baseline(results)
    if ratios:
        table = Table("benchmark", "vigil / baseline", title="ratios to the face_recognition baseline")
        for k, v in ratios.items():
            table.add_row(k, f"{v:.1f}x")
        console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "core",
        "date": date.today().isoformat(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "results": results,
        "ratios": ratios,
    }
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


def ratios_to_baseline(results: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in results.get("detect", []):
        if r["impl"].startswith("vigil watch"):
            base = next(
                (b for b in results["detect"] if b["size"] == r["size"] and "baseline" in b["impl"]), None
            )
            if base:
                out[f"detect {r['size']} (watch settings)"] = r["fps"] / base["fps"]
        if r["impl"].startswith("MMOD on onnxruntime"):
            ref = next((b for b in results["detect"] if b["impl"].startswith("MMOD by dlib")), None)
            if ref:
                out["MMOD detect 640x360 vs dlib"] = r["fps"] / ref["fps"]
    for r in results.get("embed", []):
        if r["impl"].startswith("vigil dlib-onnx"):
            for other, label in (("baseline", "face_recognition"), ("reference", "dlib")):
                base = next(
                    (b for b in results["embed"] if b["batch"] == r["batch"] and other in b["impl"]), None
                )
                if base:
                    out[f"embed batch {r['batch']} vs {label}"] = r["per_s"] / base["per_s"]
    for r in results.get("search", []):
        if r["impl"].startswith("exact"):
            base = next(
                (
                    b
                    for b in results["search"]
                    if b["templates"] == r["templates"] and "baseline" in b["impl"]
                ),
                None,
            )
            if base:
                out[f"search p50 {r['templates']:,} (exact)"] = base["p50_ms"] / r["p50_ms"]
    enrol = {("base" if "baseline" in r["impl"] else "vigil"): r for r in results.get("enrol", [])}
    if len(enrol) == 2:
        out["enrolment"] = enrol["vigil"]["per_s"] / enrol["base"]["per_s"]
    return {k: round(v, 2) for k, v in out.items()}


if __name__ == "__main__":
    main()
