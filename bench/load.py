"""A bounded load test of the server: 8 threads search by photo and recognise (CompreFace) at once.

    python bench/load.py [--threads 8] [--requests 200] [--out bench/results/load.json]

A throwaway `vigil serve` on 127.0.0.1 (its own data directory, no cameras) gets a gallery with the
shared people photos enrolled. Then ``--threads`` clients send ``--requests`` requests in all, half
``POST /api/search`` (multipart) and half ``POST /api/v1/recognition/recognize`` (a gallery-bound
key), each with a real photo. Reported per route: requests per second, p50 and p95 latency, errors;
and the server's resident memory before the load, at its peak (sampled every 50 ms) and after it.
Everything goes to 127.0.0.1 only, and the run stops by itself after ``--requests``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "tests" / "server"))

from harness import Server, start_server, stop_server  # noqa: E402

PHOTOS = ("obama.jpg", "biden.jpg", "obama2.jpg", "lin-manuel-miranda.png")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare(server: Server) -> str:
    """Enrol the shared people into gallery ``load``; a supervisor key bound to it (CompreFace)."""
    from vigil import accounts
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.storage.tables import Role

    people = SHARED / "people"
    with server.client("supervisor") as c:
        c.post("/api/galleries", json={"name": "load", "kind": "reference"}).raise_for_status()
        for name, photo in (("Barack Obama", "obama.jpg"), ("Joe Biden", "biden.jpg")):
            with (people / photo).open("rb") as fh:
                r = c.post("/api/galleries/load/identities", data={"identity": name}, files=[("files", fh)])
                r.raise_for_status()
    app = App(Settings(data_dir=server.data_dir))
    try:
        return accounts.create_api_key(app, "load-cf", Role.supervisor, gallery="load").key
    finally:
        app.close()


def one(server: Server, cf_key: str, i: int, photos: dict[str, bytes]) -> tuple[str, float, int]:
    name = PHOTOS[i % len(PHOTOS)]
    route = "search" if i % 2 == 0 else "recognize"
    start = time.perf_counter()
    if route == "search":
        headers = {"x-api-key": server.keys["operator"]}
        url = f"{server.url}/api/search"
    else:
        headers = {"x-api-key": cf_key}
        url = f"{server.url}/api/v1/recognition/recognize"
    r = httpx.post(url, headers=headers, files={"file": (name, photos[name])}, timeout=120)
    return route, time.perf_counter() - start, r.status_code


def run(args: argparse.Namespace) -> dict[str, Any]:
    photos = {p: (SHARED / "people" / p).read_bytes() for p in PHOTOS}
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", env={"VIGIL_START_CAMERAS": "false"})
        try:
            cf_key = prepare(server)
            one(server, cf_key, 0, photos)  # models loaded before the clock starts
            one(server, cf_key, 1, photos)
            pid = server.process.pid
            before = rss_mib(pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.05):
                    peak[0] = max(peak[0], rss_mib(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                results = list(pool.map(lambda i: one(server, cf_key, i, photos), range(args.requests)))
            wall_s = time.perf_counter() - started
            done.set()
            sampler.join()
            time.sleep(1.0)
            after = rss_mib(pid)
        finally:
            stop_server(server)
    routes = {}
    for route in ("search", "recognize"):
        took = sorted(t for r, t, _ in results if r == route)
        errors = sum(1 for r, _, code in results if r == route and code != 200)
        routes[route] = {
            "requests": len(took),
            "errors": errors,
            "per_s": round(len(took) / wall_s, 2),
            "p50_ms": round(statistics.median(took) * 1000, 1),
            "p95_ms": round(took[max(0, int(len(took) * 0.95) - 1)] * 1000, 1),
        }
    return {
        "threads": args.threads,
        "requests": args.requests,
        "wall_s": round(wall_s, 2),
        "per_s": round(args.requests / wall_s, 2),
        "routes": routes,
        "rss_mib": {"before": round(before, 1), "peak": round(peak[0], 1), "after": round(after, 1)},
    }


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    console = Console()
    console.print(f"{args.requests} requests from {args.threads} threads against a fresh server ...")
    result = run(args)
    table = Table(title=f"vigil serve under load ({args.threads} threads, {os.cpu_count()} cores)")
    for col in ("route", "requests", "errors", "req/s", "p50 ms", "p95 ms"):
        table.add_column(col, justify="right")
    for route, r in result["routes"].items():
        table.add_row(route, *(str(r[k]) for k in ("requests", "errors", "per_s", "p50_ms", "p95_ms")))
    console.print(table)
    rss = result["rss_mib"]
    console.print(f"server RSS: {rss['before']} MiB before, {rss['peak']} peak, {rss['after']} after")
    report = {
        "date": date.today().isoformat(),
        "machine": platform.platform(),
        "cores": os.cpu_count(),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
