"""Gallery against gallery: time and peak memory of `vigil compare` on synthetic galleries.

    python bench/compare.py [--a 10000] [--b 100000 1000000] [--no-ivf] [--out bench/results/compare.json]

For each size of B: a temporary catalog gets gallery A (``--a`` templates) and gallery B (each
template its own identity) by bulk SQL inserts of synthetic 128-d unit vectors (random directions;
1 % of A are noisy copies of random templates of B, cosine about 0.995: the planted duplicates).
B's index is then built from the catalog as identification builds it (``app.indexes.get``), and
saved. A fresh process then runs the comparison as the CLI does (``compare_galleries``): it reads
B's saved index, streams A in batches of 4096 and searches each batch in B (exact ``FlatIP``),
then, with ``--ivf`` (the default), again with the approximate index (``IVF{sqrt n},Flat``,
nprobe 32; its build time is part of its run). Reported: the time to open B's index, the time of
the comparison itself, the process's resident memory after opening the index and its peak during
the comparison (sampled every 20 ms), the pairs found and how many planted duplicates they include.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
D = 128
CHUNK = 50_000
PLANTED_SHARE = 0.01


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, D), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def bulk_insert(app: Any, gallery: str, vectors: np.ndarray, first_id: int, prefix: str) -> None:
    """One identity per vector, inserted with executemany in chunks; ids from ``first_id`` on."""
    from sqlalchemy import insert, select, update

    from vigil.storage.tables import Gallery, Identity, Template

    model_id = "dlib-resnet-v1"
    with app.db.session() as s:
        gid = s.scalar(select(Gallery.id).where(Gallery.name == gallery))
    for start in range(0, len(vectors), CHUNK):
        stop = min(len(vectors), start + CHUNK)
        with app.db.session() as s:
            s.execute(
                insert(Identity),
                [
                    {"id": first_id + i, "gallery_id": gid, "name": f"{prefix}{i:07d}"}
                    for i in range(start, stop)
                ],
            )
            s.execute(
                insert(Template),
                [
                    {
                        "id": first_id + i,
                        "identity_id": first_id + i,
                        "model_id": model_id,
                        "dimension": D,
                        "vector": vectors[i].astype("<f4").tobytes(),
                        "quality": 1.0,
                        "source_sha256": f"{first_id + i:064x}",
                    }
                    for i in range(start, stop)
                ],
            )
    with app.db.session() as s:
        s.execute(update(Gallery).where(Gallery.id == gid).values(generation=Gallery.generation + 1))


def build(data_dir: Path, n_a: int, n_b: int) -> dict[str, Any]:
    """Galleries A and B in a fresh catalog, B's index built and saved; timings and the planted pairs."""
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.gallery import galleries
    from vigil.gallery.enroll import load_templates
    from vigil.investigation.compare import model_card
    from vigil.storage.index import IndexKey
    from vigil.storage.tables import Gallery

    rng = np.random.default_rng(n_b)
    app = App(Settings(data_dir=data_dir))
    try:
        for name in ("wanted", "enrolled"):
            galleries.create_gallery(app, galleries.validate_spec(name=name, kind="investigation"))
        b = unit_vectors(rng, n_b)
        a = unit_vectors(rng, n_a)
        planted = rng.choice(n_b, size=int(n_a * PLANTED_SHARE), replace=False)
        noisy = b[planted] + rng.standard_normal((len(planted), D), dtype=np.float32) * (0.1 / np.sqrt(D))
        a[: len(planted)] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        t = time.perf_counter()
        bulk_insert(app, "enrolled", b, 1, "b")
        bulk_insert(app, "wanted", a, n_b + 1, "a")
        insert_s = time.perf_counter() - t
        del a, b
        card = model_card(app)
        with app.db.session() as s:
            g = s.query(Gallery).filter(Gallery.name == "enrolled").one()
            gid, generation = g.id, g.generation
        t = time.perf_counter()
        app.indexes.get(
            IndexKey(gid, card.id), generation, card.dimension, lambda: load_templates(app, gid, card.id)
        )
        index_s = time.perf_counter() - t
    finally:
        app.close()
    pairs = [(f"a{i:07d}", f"b{int(j):07d}") for i, j in enumerate(planted)]
    return {"insert_s": round(insert_s, 1), "index_build_s": round(index_s, 1), "planted": pairs}


def run_compare(data_dir: str, index: str) -> dict[str, Any]:
    """In a fresh process: open B's saved index, then compare A with B as `vigil compare` does."""
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.investigation.compare import CompareRequest, compare_galleries, model_card
    from vigil.storage.index import IndexKey
    from vigil.storage.tables import Gallery

    app = App(Settings(data_dir=Path(data_dir)))
    try:
        card = model_card(app)
        with app.db.session() as s:
            g = s.query(Gallery).filter(Gallery.name == "enrolled").one()
            gid, generation = g.id, g.generation
        t = time.perf_counter()
        app.indexes.get(IndexKey(gid, card.id), generation, card.dimension, lambda: None)
        open_s = time.perf_counter() - t
        base = rss_bytes()
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                peak[0] = max(peak[0], rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t = time.perf_counter()
        result = compare_galleries(
            app,
            CompareRequest(gallery_a="wanted", gallery_b="enrolled", case="bench", index=index),  # type: ignore[arg-type]
            actor="bench",
        )
        compare_s = time.perf_counter() - t
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], rss_bytes())
    finally:
        app.close()
    return {
        "open_index_s": round(open_s, 2),
        "compare_s": round(compare_s, 2),
        "rss_after_index_mb": round(base / 2**20),
        "peak_rss_compare_mb": round(peak[0] / 2**20),
        "threshold": result.threshold,
        "identity_pairs": len(result.identities),
        "found": [(p.identity_a, p.identity_b) for p in result.identities],
        "recall_at_k": result.recall,
        "recall_above_threshold": result.recall_above_threshold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", type=int, default=10_000, help="templates of gallery A")
    parser.add_argument("--b", type=int, nargs="+", default=[100_000, 1_000_000], help="sizes of gallery B")
    parser.add_argument("--no-ivf", action="store_true", help="exact search only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compare.json")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    rows: list[dict[str, Any]] = []
    spawn = get_context("spawn")
    for n_b in args.b:
        with tempfile.TemporaryDirectory() as tmp:
            console.print(f"[bold]{args.a:,} x {n_b:,}[/]: building the catalog and B's index ...")
            built = build(Path(tmp), args.a, n_b)
            planted = {tuple(p) for p in built.pop("planted")}
            for index in ("exact",) if args.no_ivf else ("exact", "ivf"):
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    measured = pool.submit(run_compare, tmp, index).result()
                found = {tuple(p) for p in measured.pop("found")}
                rows.append(
                    {
                        "a": args.a,
                        "b": n_b,
                        "index": index,
                        **built,
                        **measured,
                        "planted": len(planted),
                        "planted_found": len(found & planted),
                        "other_pairs": len(found - planted),
                        "probes_per_s": round(args.a / measured["compare_s"]),
                    }
                )
                console.print(rows[-1])
    shown = {
        "a": "A",
        "b": "B",
        "index": "index",
        "index_build_s": "build B's index s",
        "open_index_s": "open index s",
        "compare_s": "compare s",
        "probes_per_s": "probes/s",
        "rss_after_index_mb": "RSS with index MB",
        "peak_rss_compare_mb": "peak RSS MB",
        "threshold": "threshold",
        "identity_pairs": "pairs",
        "planted_found": "planted found",
        "recall_at_k": "recall@k",
        "recall_above_threshold": "recall >= thr",
    }
    table = Table(*shown.values(), title="gallery against gallery (synthetic 128-d templates)")
    for r in rows:
        cells = {**r, "planted_found": f"{r['planted_found']}/{r['planted']}"}
        table.add_row(*[str(cells[k]) for k in shown])
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "compare",
        "date": date.today().isoformat(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
