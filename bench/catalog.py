"""Catalog benchmark: enrolment into SQLite against PostgreSQL.

    python bench/catalog.py [--faces 60] [--bulk 20000] [--postgresql URL] [--out bench/results/catalog.json]

Real parts: vigil's service layer (:func:`vigil.gallery.enroll.enroll_prepared`: identity, photo blob,
template, the gallery's generation, the audit entry, all in one transaction, then the FAISS index) on
a SQLite catalog in the data directory (WAL) and on a PostgreSQL database. Without ``--postgresql`` a
throwaway cluster is started as the tests start it (tests/pgserver.py; the server binaries of Debian's
``postgresql-15``), with durability off there (``fsync=off``): compare the figures as catalog overhead,
not as disk-bound commit rates.

1. **Enrolment, 1 writer**: ``--faces`` lfw-dev people (faces detected and embedded once, before the
   clock starts) enrolled one by one into a watchlist; enrolments/s.
2. **Enrolment, 4 writers**: 4 threads (one App each, as 4 servers on one catalog) enrol the same
   people into 4 watchlists at once; enrolments/s over all of them.
3. **Bulk templates**: ``--bulk`` synthetic 512-d templates inserted at the storage layer in batches of
   500 rows per transaction (the import path of a migration from another system); templates/s.

Prints a table and writes JSON (``bench/results/`` is ignored by git; this result is added on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pgserver import PgCluster  # noqa: E402
from vigil.app import App  # noqa: E402
from vigil.core.config import Settings  # noqa: E402
from vigil.core.errors import VigilError  # noqa: E402
from vigil.gallery import enroll as enrolment  # noqa: E402
from vigil.gallery import galleries  # noqa: E402
from vigil.storage.tables import Gallery, Identity, Template  # noqa: E402
from vigil.vision.engine import FaceEngine, build_engine  # noqa: E402
from vigil.vision.image import load_image  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
WRITERS = 4
BATCH = 500


def _watchlist(app: App, name: str) -> None:
    spec = galleries.validate_spec(
        name=name,
        kind="watchlist",
        purpose="bench",
        legal_basis="bench",
        authorized_by="bench",
        expires_on=date.today() + timedelta(days=30),
    )
    galleries.create_gallery(app, spec)


def _faces(app: App, n: int) -> list[tuple[str, enrolment.PreparedFace]]:
    out = []
    for d in sorted(p for p in (SHARED / "lfw-dev").iterdir() if p.is_dir()):
        try:
            out.append((d.name, enrolment.prepare_face(app, load_image(sorted(d.glob("*.jpg"))[0]))))
        except (VigilError, IndexError):
            continue
        if len(out) == n:
            return out
    raise SystemExit(f"fewer than {n} usable lfw-dev people under {SHARED}")


def _enrol_all(app: App, gallery: str, people: list[tuple[str, enrolment.PreparedFace]]) -> None:
    for name, face in people:
        enrolment.enroll_prepared(app, gallery, name, [face], actor="bench")


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _bulk(app: App, n: int) -> float:
    _watchlist(app, "bulk")
    rng = np.random.default_rng(0)
    model, dim = app.engine.card.id, app.engine.card.dimension
    with app.db.session() as s:
        gid = s.scalar(select(Gallery.id).where(Gallery.name == "bulk"))
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        vecs = rng.standard_normal((min(BATCH, n - start), dim)).astype("<f4")
        with app.db.session() as s:
            ids = s.scalars(
                insert(Identity).returning(Identity.id),
                [{"gallery_id": gid, "name": f"p{start + i}"} for i in range(len(vecs))],
            ).all()
            s.execute(
                insert(Template),
                [
                    {
                        "identity_id": iid,
                        "model_id": model,
                        "dimension": dim,
                        "vector": v.tobytes(),
                        "quality": 1.0,
                        "source_sha256": f"{start + i:064d}",
                    }
                    for i, (iid, v) in enumerate(zip(ids, vecs, strict=True))
                ],
            )
    return time.perf_counter() - t0


def run_catalog(
    label: str, url: str | None, engine: FaceEngine, faces: int, bulk: int, tmp: Path
) -> dict[str, Any]:
    db = url or f"sqlite:///{tmp / label / 'vigil.db'}"
    apps = [
        App(Settings(data_dir=tmp / label / f"server{i}", database_url=db), engine_override=engine)
        for i in range(WRITERS)
    ]
    try:
        people = _faces(apps[0], faces)
        for g in ["one", *(f"w{i}" for i in range(WRITERS))]:
            _watchlist(apps[0], g)
        one = _timed(lambda: _enrol_all(apps[0], "one", people))
        threads = [threading.Thread(target=_enrol_all, args=(a, f"w{i}", people)) for i, a in enumerate(apps)]

        def together() -> None:
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        many = _timed(together)
        bulk_s = _bulk(apps[0], bulk)
    finally:
        for a in apps:
            a.close()
    return {
        "catalog": label,
        "enrol_1_writer_per_s": round(faces / one, 1),
        "enrol_4_writers_per_s": round(WRITERS * faces / many, 1),
        "bulk_templates_per_s": round(bulk / bulk_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=60)
    ap.add_argument("--bulk", type=int, default=20000)
    ap.add_argument("--postgresql", help="an empty database's URL (default: a throwaway cluster)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "catalog.json")
    args = ap.parse_args()
    cluster = None if args.postgresql else PgCluster.start()
    try:
        pg_url = args.postgresql or cluster.new_database()  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            engine = build_engine(Settings(data_dir=tmp / "engine"))
            rows = [
                run_catalog("sqlite", None, engine, args.faces, args.bulk, tmp),
                run_catalog("postgresql", pg_url, engine, args.faces, args.bulk, tmp),
            ]
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{'catalog':<12}{'enrol/s (1)':>14}{'enrol/s (4)':>14}{'templates/s (bulk)':>20}")
    for r in rows:
        print(
            f"{r['catalog']:<12}{r['enrol_1_writer_per_s']:>14}{r['enrol_4_writers_per_s']:>14}"
            f"{r['bulk_templates_per_s']:>20}"
        )
    result = {
        "bench": "catalog",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version()},
        "faces": args.faces,
        "bulk": args.bulk,
        "writers": WRITERS,
        "postgresql": "given URL" if args.postgresql else "throwaway cluster, fsync=off",
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
