"""Unknown-face clustering benchmark: can a day of sightings be clustered in minutes?

    python bench/clustering.py [--sizes 10000 100000] [--out bench/results/clustering.json]

Synthetic sightings: 128-d unit vectors around a few hundred centres (300 for 10k sightings, 600 for
100k), made to score like the dlib ResNet's real ones: centres share a common direction so that two
people score about 0.8 (cosine), and each sighting is its centre plus noise so that two sightings of
one person score about 0.95. The threshold is the model card's 1:1 threshold at the default FMR
(0.1 %), 0.926, as `vigil clusters update` uses it. Sightings arrive in random order (a day's traffic).

Rows:
- ``vigil (arrays)``: :func:`vigil.investigation.clusters.cluster_vectors`, the algorithm alone
  (batches of 2,000: assign to centroids, agglomerate the rest, merge the new groups).
- ``vigil update (catalog)``: :func:`vigil.investigation.clusters.update` end to end on a SQLite
  catalog (load templates, cluster, write clusters and memberships).
- ``vigil update, +1% next hour``: the incremental case: 1 % more sightings after that.
- ``one-shot AgglomerativeClustering (baseline)``: scikit-learn on all sightings at once (average
  linkage, cosine) at 10k; at 100k it would need the full distance matrix (about 40 GB), so it is not run.

Quality: the adjusted Rand index against the true centres, and the number of clusters of two or more
sightings against the number of centres. Every figure is from one run on this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DIM = 128
THRESHOLD = 0.9258  # dlib-resnet-v1's threshold_for_fmr(1e-3), as the card gives it


def synthetic(n: int, centres: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 128) float32 unit sightings in random order and (n,) int64 true centre of each."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=DIM)
    common /= np.linalg.norm(common)
    r = rng.normal(size=(centres, DIM))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    c = common + 0.5 * r  # two people: cosine about 0.8
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    truth = rng.integers(0, centres, n)
    sigma = rng.uniform(0.015, 0.025, (n, 1))  # two sightings of one person: about 0.95
    v = c[truth] + sigma * rng.normal(size=(n, DIM))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32), truth.astype(np.int64)


def quality(labels: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    _, counts = np.unique(labels, return_counts=True)
    return {
        "clusters>=2": int((counts >= 2).sum()),
        "centres": len(np.unique(truth)),
        "ari": round(float(adjusted_rand_score(truth, labels)), 4),
    }


def bench_arrays(n: int, centres: int) -> dict[str, Any]:
    from vigil.investigation.clusters import cluster_vectors

    v, truth = synthetic(n, centres)
    t = time.perf_counter()
    labels, _ = cluster_vectors(v, THRESHOLD)
    seconds = time.perf_counter() - t
    return {"n": n, "impl": "vigil (arrays)", "seconds": round(seconds, 2), **quality(labels, truth)}


def bench_baseline(n: int, centres: int) -> dict[str, Any]:
    if n > 20_000:
        gb = n * (n - 1) / 2 * 8 / 1e9
        return {
            "n": n,
            "impl": "one-shot AgglomerativeClustering (baseline)",
            "seconds": f"not run (~{gb:.0f} GB)",
        }
    from sklearn.cluster import AgglomerativeClustering

    v, truth = synthetic(n, centres)
    t = time.perf_counter()
    labels = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1 - THRESHOLD
    ).fit_predict(v.astype(np.float64))
    seconds = time.perf_counter() - t
    return {
        "n": n,
        "impl": "one-shot AgglomerativeClustering (baseline)",
        "seconds": round(seconds, 2),
        **quality(labels, truth),
    }


def _insert(app: Any, vectors: np.ndarray, start: datetime, model_id: str) -> None:
    from sqlalchemy import insert

    from vigil.storage.tables import Sighting

    rows = [
        {
            "camera_name": f"cam{i % 8}",
            "track_id": i,
            "first_seen": (start + timedelta(seconds=i)).replace(tzinfo=None),
            "last_seen": (start + timedelta(seconds=i + 3)).replace(tzinfo=None),
            "frames": 20,
            "quality": 0.9,
            "model_id": model_id,
            "dimension": DIM,
            "vector": v.astype("<f4").tobytes(),
            "crop_sha256": None,
        }
        for i, v in enumerate(vectors)
    ]
    with app.db.session() as s:
        for k in range(0, len(rows), 5000):
            s.execute(insert(Sighting), rows[k : k + 5000])


def bench_catalog(n: int, centres: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.investigation import clusters
    from vigil.storage.tables import Sighting

    extra = max(1, n // 100)
    v, truth = synthetic(n + extra, centres)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        app = App(Settings(data_dir=Path(tmp)))
        try:
            model_id = app.engine.card.id
            start = datetime.now(UTC) - timedelta(days=1)
            _insert(app, v[:n], start, model_id)
            t = time.perf_counter()
            report = clusters.update(app, "bench")
            seconds = time.perf_counter() - t
            with app.db.session() as s:
                got = dict(s.execute(select(Sighting.track_id, Sighting.cluster_id)).all())
            labels = np.array([got.get(i) if got.get(i) is not None else -1 - i for i in range(n)])
            out.append(
                {
                    "n": n,
                    "impl": "vigil update (catalog)",
                    "seconds": round(seconds, 2),
                    **quality(labels, truth[:n]),
                    "unclustered": report.left_unclustered,
                }
            )
            _insert(app, v[n:], start + timedelta(hours=23), model_id)
            t = time.perf_counter()
            report = clusters.update(app, "bench")
            seconds = time.perf_counter() - t
            out.append(
                {
                    "n": extra,
                    "impl": "vigil update, +1% next hour",
                    "seconds": round(seconds, 2),
                    "assigned": report.assigned,
                    "new clusters": report.new_clusters,
                }
            )
        finally:
            app.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "clustering.json")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        centres = 300 if n <= 10_000 else 600
        console.print(f"[bold]{n:,} sightings, {centres} people[/] ...")
        rows.append({**bench_arrays(n, centres), "people": centres})
        rows.extend({**r, "people": centres} for r in bench_catalog(n, centres))
        rows.append({**bench_baseline(n, centres), "people": centres})
    table = Table(title=f"clustering (threshold {THRESHOLD} cosine, average linkage)")
    keys: list[str] = list(dict.fromkeys(k for r in rows for k in r))
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(*[str(r.get(k, "")) for k in keys])
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "clustering",
        "date": date.today().isoformat(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "threshold": THRESHOLD,
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
