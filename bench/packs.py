"""Model-pack benchmark: the video pipeline and the embedder of each pack, in one run.

    python bench/packs.py [--models ../shared/models] [--out bench/results/packs.json] [--quick]

For each pack (``dlib``, ``edgeface-xs``, ``edgeface-xxs``; the EdgeFace packs are installed from
``--models`` into a temporary data directory first, as ``vigil models install NAME --from DIR`` does):

- ``vigil watch`` on the hamilton clip (640x360) played 4 times, Lin-Manuel Miranda enrolled in a
  watchlist, each run in its own process pinned to 1 and to 2 cores: frames/s, alarms, stage times;
- embeddings/s of the pack's embedder at batch 1, 16 and 64 (faces of one photo, aligned as the pack
  aligns them), on 2 cores, median of repeats.

Prints a table and writes JSON. Needs the shared data (``VIGIL_SHARED_DATA``, default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video import CLIP, PORTRAIT, ROOT, SHARED, make_clips, pin

PACKS = ("dlib", "edgeface-xs", "edgeface-xxs")
BATCHES = (1, 16, 64)


def _settings(data_dir: Path, pack: str, cores: int) -> Any:
    from vigil.core.config import Settings

    return Settings(data_dir=data_dir, model_pack=pack, threads=cores, model_download=False)


def _fresh_data_dir(models_home: Path, tmp: str) -> Path:
    """An empty data directory whose ``models/`` is the one the packs were installed into."""
    data = Path(tmp) / "data"
    data.mkdir()
    (data / "models").symlink_to(models_home / "models", target_is_directory=True)
    return data


def run_watch(models_home: Path, pack: str, clip: str, cores: int) -> dict[str, Any]:
    pin(cores)
    from vigil.app import App
    from vigil.gallery import enroll, galleries
    from vigil.video.watch import watch
    from vigil.vision.image import load_image

    with tempfile.TemporaryDirectory() as tmp:
        app = App(_settings(_fresh_data_dir(models_home, tmp), pack, cores))
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
        summary: dict[str, Any] = watch(app, clip)
        summary["model"] = app.engine.model_id
        app.close()
    return summary


def run_embed(models_home: Path, pack: str, cores: int) -> dict[str, Any]:
    """Embeddings/s at each batch size: the portrait's face repeated ``batch`` times."""
    pin(cores)
    from vigil.vision.engine import build_engine
    from vigil.vision.image import load_image

    engine = build_engine(_settings(models_home, pack, cores))
    bgr = load_image(PORTRAIT).bgr
    face = engine.detect(bgr)[:1]
    rates: dict[str, float] = {}
    for batch in BATCHES:
        faces = face[[0] * batch]
        engine.embed(bgr, faces)  # warm up
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            engine.embed(bgr, faces)
            times.append(time.perf_counter() - t0)
        rates[str(batch)] = round(batch / statistics.median(times), 1)
    return {"embeddings_per_s": rates, "model": engine.model_id, "dimension": engine.card.dimension}


def child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def install_packs(models: Path, home: Path) -> None:
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.vision.packs.service import install_pack

    app = App(Settings(data_dir=home, model_download=False))
    for pack in PACKS[1:]:
        install_pack(app, pack, "bench", from_dir=models)
    app.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=SHARED.parent / "models", help="the pack files")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "packs.json")
    parser.add_argument("--quick", action="store_true", help="the clip once, not 4 times")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, home, pack, *rest = args.child
        if kind == "watch":
            print(json.dumps(run_watch(Path(home), pack, rest[0], int(rest[1]))))
        else:
            print(json.dumps(run_embed(Path(home), pack, int(rest[0]))))
        return
    if not CLIP.is_file():
        sys.exit(f"shared data not found at {SHARED}; set VIGIL_SHARED_DATA")
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        install_packs(args.models, home)
        clip = str(CLIP) if args.quick else str(make_clips(Path(tmp))["640x360"])
        for pack in PACKS:
            console.print(f"{pack}: embedding rates ...")
            embed = child(["embed", str(home), pack, "2"])
            for cores in (1, 2):
                console.print(f"{pack}: watch on {cores} core(s) ...")
                watched = child(["watch", str(home), pack, clip, str(cores)])
                rows.append({"pack": pack, "cores": cores, **watched, **embed})
    dlib = {r["cores"]: r["fps"] for r in rows if r["pack"] == "dlib"}
    table = Table(title="model packs: vigil watch on the hamilton clip (640x360) and embedding rates")
    for col in ("pack", "model", "cores", "frames", "fps", "x dlib", "detect ms", "embed ms", "alarms"):
        table.add_column(col)
    for b in BATCHES:
        table.add_column(f"emb/s @{b}")
    for r in rows:
        stages = r.get("stage_ms_per_frame", {})
        r["ratio_to_dlib"] = round(r["fps"] / dlib[r["cores"]], 2)
        table.add_row(
            r["pack"],
            r["model"],
            str(r["cores"]),
            str(r["frames"]),
            f"{r['fps']:.1f}",
            f"{r['ratio_to_dlib']:.2f}",
            f"{stages.get('detect', 0):.1f}",
            f"{stages.get('embed', 0):.1f}",
            str(r.get("alarms", "")),
            *(f"{r['embeddings_per_s'][str(b)]:.0f}" for b in BATCHES),
        )
    Console(width=170).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "packs",
        "date": date.today().isoformat(),
        "command": "python bench/packs.py" + (" --quick" if args.quick else ""),
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
