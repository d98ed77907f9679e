"""Search at scale: exact against vigil's approximate gallery index, 100k to 10M templates.

    python bench/search.py [--sizes 100000,1000000,10000000] [--dims 128,512] [--work-dir /tmp]

Vectors are the clustered synthetic templates of ``bench/core.py`` (each a noisy copy of its own
identity's centre; each query a noisy copy of one template). Galleries too big for memory are
generated in chunks into a float32 file under ``--work-dir`` (never the repository), which is then
the approximate index's memory-mapped re-ranking store. Ground truth (the exact top 10 of every
query) is computed in chunks read from that file. Memory is the growth of the process's anonymous
resident memory (file pages of the memory-mapped store are page cache, reported apart).
Prints a table and writes bench/results/search.json (rows merged by size, dimension and backend,
so parts can be rerun).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from core import noisy_queries, synthetic_chunks
from vigil.storage.ann import TRAIN_PER_LIST, IndexPolicy, IvfIndex, VectorStore, nlist_for
from vigil.storage.index import FaissIndex

RESULTS = Path(__file__).parent / "results" / "search.json"
N_QUERIES = 300
IN_MEMORY_MAX = 2_000_000  # galleries up to this size are generated in memory; above, into a file
EXACT_IN_MEMORY_BYTES = 6 * 2**30


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def anon_mb() -> float:
    return status_kb("RssAnon") / 1024


def make_gallery(
    n: int, d: int, rng: np.random.Generator, work: Path, policy: IndexPolicy
) -> tuple[Any, float]:
    """(n, d) vectors (in memory, or a read-only memmap of a file under ``work``), seconds taken."""
    t = time.perf_counter()
    if n <= IN_MEMORY_MAX and n <= policy.compressed_above:
        out = np.empty((n, d), np.float32)
        for start, block in synthetic_chunks(n, d, rng, 250_000):
            out[start : start + len(block)] = block
        return out, time.perf_counter() - t
    path = work / f"gallery-{n}x{d}.f32"
    with path.open("wb") as fh:
        for _, block in synthetic_chunks(n, d, rng, 250_000):
            fh.write(block.astype("<f4").tobytes())
    return np.memmap(path, dtype="<f4", mode="r", shape=(n, d)), time.perf_counter() - t


def chunks(gallery: Any, size: int = 250_000) -> Any:
    """Rows of ``gallery`` a chunk at a time, copied (a memmap's pages are dropped after each)."""
    for start in range(0, len(gallery), size):
        yield start, np.array(gallery[start : start + size], dtype=np.float32)


def ground_truth(gallery: Any, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact (q, k) rows and scores by brute force over chunks, and the seconds it took."""
    t = time.perf_counter()
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    import faiss

    for start, block in chunks(gallery):
        scores, rows = faiss.knn(queries, block, k, metric=faiss.METRIC_INNER_PRODUCT)
        cand_s = np.concatenate([best_s, scores], 1)
        cand_i = np.concatenate([best_i, rows + start], 1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i, best_s, time.perf_counter() - t


def measure(search: Any, queries: np.ndarray, truth: np.ndarray, n_single: int) -> dict[str, Any]:
    lat, cpu = [], []
    for q in queries[:n_single]:
        t, c = time.perf_counter(), time.thread_time()
        search(q[None, :], 10)
        lat.append(1000 * (time.perf_counter() - t))
        cpu.append(1000 * (time.thread_time() - c))
    t = time.perf_counter()
    ids, _ = search(queries, 10)
    qps = len(queries) / (time.perf_counter() - t)
    r1 = float(np.mean(ids[:, 0] == truth[:, 0]))
    r10 = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]))
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),  # the calling thread's CPU time:
        "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3),  # what a query costs, without waits
        "single_queries": len(lat),
        "batched_qps": round(qps, 1),
        "recall_at_1": round(r1, 4),
        "recall_at_10": round(r10, 4),
    }


def build_compressed(gallery: Any, d: int, policy: IndexPolicy, store_file: Path) -> FaissIndex:
    """The ``ivf-sq8`` tier over a gallery already on disk: the file itself becomes the store
    (vigil's own build copies the vectors into the store; at 10M x 512 that is 20 GB more disk)."""
    n = len(gallery)
    store = VectorStore(d)
    store.adopt(store_file, {"ids": np.arange(n, dtype=np.int64), "rows": np.arange(n), "count": n}, None)
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist_for(n)), replace=False))
    sample = np.asarray(gallery[rows], dtype=np.float32)
    ivf = IvfIndex.train(d, sample, n, "ivf-sq8", policy, store)
    del sample
    for start, block in chunks(gallery):
        ivf._ivf.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    return FaissIndex(d, ivf, policy)


def bench_one(n: int, d: int, work: Path, policy: IndexPolicy) -> list[dict[str, Any]]:
    if n <= policy.approximate_above:  # measured approximate even below the default threshold
        policy = IndexPolicy(n - 1, policy.compressed_above, policy.nprobe, policy.rerank)
    rng = np.random.default_rng(0)
    base = anon_mb()
    gallery, gen_s = make_gallery(n, d, rng, work, policy)
    qrows = np.sort(rng.choice(n, size=N_QUERIES, replace=False))
    queries = noisy_queries(np.asarray(gallery[qrows]), np.arange(N_QUERIES), rng)
    truth, _, truth_s = ground_truth(gallery, queries)
    print(f"  {n}x{d}: generated in {gen_s:.0f} s, ground truth in {truth_s:.0f} s", flush=True)
    common = {"templates": n, "dim": d, "load_avg_1m": round(os.getloadavg()[0], 1)}  # a shared machine
    rows = []
    if n * d * 4 <= EXACT_IN_MEMORY_BYTES:
        before = anon_mb()
        t = time.perf_counter()
        exact = FaissIndex(d)
        for start, block in chunks(gallery):
            exact.add(np.arange(start, start + len(block), dtype=np.int64), block)
        build_s = time.perf_counter() - t
        mem = anon_mb() - before
        m = measure(exact.search, queries, truth, 200 if n <= 1_000_000 else 10)
        rows.append(
            {
                **common,
                "backend": "exact (FlatIP)",
                **m,
                "build_s": round(build_s, 1),
                "memory_mb": round(mem),
            }
        )
        del exact
    else:
        m = {"p50_ms": round(1000 * truth_s / N_QUERIES, 1), "batched_qps": round(N_QUERIES / truth_s, 1)}
        rows.append({**common, "backend": "exact (chunks streamed from disk, batched only)", **m})
    before = anon_mb()
    t = time.perf_counter()
    if n > policy.compressed_above and isinstance(gallery, np.memmap):
        index = build_compressed(gallery, d, policy, Path(gallery.filename))
    else:
        index = FaissIndex.build(d, (np.arange(n, dtype=np.int64), gallery), policy)
    build_s = time.perf_counter() - t
    mem = anon_mb() - before
    ivf = index.approximate
    assert ivf is not None
    m = measure(index.search, queries, truth, N_QUERIES)
    label = f"vigil {ivf.kind} (IVF{ivf.nlist}, nprobe {min(ivf.nlist, policy.nprobe)}"
    label += f", re-rank {policy.rerank})" if ivf.kind == "ivf-sq8" else ")"
    rows.append(
        {
            **common,
            "backend": label,
            **m,
            "build_s": round(build_s, 1),
            "memory_mb": round(mem),
            "store_on_disk_mb": round(n * d * 4 / 2**20) if ivf.store is not None else 0,
        }
    )
    rows[-1]["peak_anon_mb_process"] = round(status_kb("VmHWM") / 1024)
    del index, ivf, gallery
    print(f"  (anonymous memory now {anon_mb() - base:.0f} MB above start)", flush=True)
    return rows


def lfw_pairs(data_dir: Path, limit: int = 300) -> tuple[np.ndarray, np.ndarray, str, Any]:
    """Real dlib embeddings: (first photos, second photos) of LFW people with two (the default engine)."""
    from vigil.core.config import Settings
    from vigil.vision.engine import build_engine
    from vigil.vision.image import load_image

    root = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("VIGIL_SHARED_DATA", root.parent / "shared" / "data"))
    engine = build_engine(Settings(data_dir=data_dir))
    firsts, seconds = [], []
    for person in sorted(p for p in (shared / "lfw-dev").iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))[:2]
        if len(photos) < 2:
            continue
        pair = []
        for photo in photos:
            image = load_image(photo)
            faces = engine.embed(image.bgr, engine.detect(image.bgr))
            if len(faces):
                widths = faces.xyxy[:, 2] - faces.xyxy[:, 0]
                pair.append(faces.embedding[int(np.argmax(widths))])
        if len(pair) == 2:
            firsts.append(pair[0])
            seconds.append(pair[1])
        if len(firsts) >= limit:
            break
    return np.array(firsts, np.float32), np.array(seconds, np.float32), engine.card.id, engine.card


def bench_real(n: int, policy: IndexPolicy) -> list[dict[str, Any]]:
    """Real faces among distractors drawn from a Gaussian fitted to real embeddings (where faces sit):
    recall of the approximate tier alone, and the share of queries the threshold recheck sends to an
    exhaustive search (what keeps decisions exact)."""
    with tempfile.TemporaryDirectory(prefix="vigil-search-engine-") as tmp:
        firsts, seconds, model, card = lfw_pairs(Path(tmp))
    rng = np.random.default_rng(3)
    both = np.concatenate([firsts, seconds])
    cloud = both.mean(0) + rng.standard_normal((n - len(firsts), both.shape[1])) * both.std(0)
    gallery = np.concatenate([firsts, cloud / np.linalg.norm(cloud, axis=1, keepdims=True)]).astype(
        np.float32
    )
    ids = np.arange(n, dtype=np.int64)
    truth, truth_s, _ = ground_truth(gallery, seconds)
    threshold = card.threshold_for_fpir(1e-2, n)
    floor = threshold - 0.05  # the default index_recheck_margin
    index = FaissIndex.build(gallery.shape[1], (ids, gallery), IndexPolicy(n - 1, nprobe=policy.nprobe))
    common = {"templates": n, "dim": gallery.shape[1], "data": f"LFW {model} + Gaussian distractors"}
    common["load_avg_1m"] = round(os.getloadavg()[0], 1)
    rows = []
    for label, recheck in (("vigil ivf alone", None), ("vigil ivf + threshold recheck", floor)):
        m = measure(lambda q, k, r=recheck: index.search(q, k, recheck_above=r), seconds, truth, len(seconds))
        rows.append({**common, "backend": label, **m})
    found, found_s = index.search(seconds, 1)
    above = truth_s[:, 0] >= threshold
    rows[-1]["threshold"] = round(threshold, 4)
    rows[-1]["queries_rechecked"] = round(float(np.mean(found_s[:, 0] >= floor)), 3)
    rows[-1]["recall_at_1_above_threshold_alone"] = round(
        float(np.mean((found[:, 0] == truth[:, 0])[above])), 3
    )
    rows[-1]["queries_above_threshold"] = int(above.sum())
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ["templates", "dim", "backend", "p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms", "batched_qps"]
    cols += ["recall_at_1", "recall_at_10"]
    cols += ["build_s", "memory_mb"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--dims", default="128,512")
    ap.add_argument("--compressed-above", type=int, default=IndexPolicy().compressed_above)
    ap.add_argument("--real", type=int, default=200_000, help="LFW + distractors size (0: skip)")
    ap.add_argument("--work-dir", default=tempfile.gettempdir(), help="where galleries too big for memory go")
    args = ap.parse_args()
    import faiss

    policy = IndexPolicy(compressed_above=args.compressed_above)
    rows: list[dict[str, Any]] = []
    if args.real:
        new = bench_real(args.real, policy)
        print_table(new)
        write(new, lambda r: "data" in r, faiss, policy)
    for n in [int(x) for x in args.sizes.split(",")] if args.sizes else []:
        for d in [int(x) for x in args.dims.split(",")]:
            work = Path(tempfile.mkdtemp(prefix="vigil-search-", dir=args.work_dir))
            try:
                new = bench_one(n, d, work, policy)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print_table(new)
            rows = write(
                new,
                lambda r, n=n, d=d: "data" not in r and (r["templates"], r["dim"]) == (n, d),
                faiss,
                policy,
            )
    print_table(rows)


def write(new: list[dict[str, Any]], replaces: Any, faiss: Any, policy: IndexPolicy) -> list[dict[str, Any]]:
    """Merge ``new`` into the results file (rows ``replaces`` picks are dropped); all rows."""
    old = json.loads(RESULTS.read_text())["rows"] if RESULTS.exists() else []  # other runs' rows
    rows = sorted([r for r in old if not replaces(r)] + new, key=lambda r: (r["templates"], r["dim"]))
    RESULTS.parent.mkdir(exist_ok=True)
    meta = {"date": date.today().isoformat(), "machine": platform.processor() or platform.machine()}
    meta |= {"cpus": faiss.omp_get_max_threads(), "queries": N_QUERIES, "policy": policy.__dict__}
    RESULTS.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
