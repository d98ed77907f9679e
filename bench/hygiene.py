"""Time `vigil gallery check` at 10,000 identities (3 templates each) against a second gallery of
10,000: the catalog load, the wrong-photo pass and the blocked pairwise pass. The vectors are random
(each person's three near one random direction, so a clean gallery: no finding to list).
Run: .venv/bin/python bench/hygiene.py [PEOPLE] [--profile]"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vigil.app import App
from vigil.core.config import Settings
from vigil.gallery import galleries, hygiene
from vigil.storage.tables import Identity, Photo, Template


def fill(app: App, gallery: str, people: int, per: int, rng: np.random.Generator) -> None:
    galleries.create_gallery(app, galleries.validate_spec(name=gallery, kind="reference"))
    dim = app.engine.card.dimension
    with app.db.session() as s:
        gid = galleries.get_gallery(s, gallery).id
        for i in range(people):
            ident = Identity(gallery_id=gid, name=f"p{i}")
            s.add(ident)
            s.flush()
            base = rng.standard_normal(dim)
            for k in range(per):
                sha = f"{gid:08x}{i:024x}{k:032x}"
                photo = Photo(identity_id=ident.id, sha256=sha, width_px=1, height_px=1)
                s.add(photo)
                s.flush()
                v = (base + 0.2 * rng.standard_normal(dim)).astype("<f4")
                v /= np.linalg.norm(v)
                s.add(
                    Template(
                        identity_id=ident.id,
                        photo_id=photo.id,
                        model_id=app.engine.card.id,
                        dimension=dim,
                        vector=v.tobytes(),
                        quality=0.9,
                        source_sha256=sha,
                    )
                )


def main() -> None:
    people = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        app = App(Settings(data_dir=Path(tmp), model_download=False))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        fill(app, "big", people, 3, rng)
        fill(app, "other", people, 3, rng)
        print(f"filled 2 x {people} identities x 3 templates in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        if "--profile" in sys.argv:
            import cProfile

            cProfile.runctx('hygiene.check_gallery(app, "big")', globals(), locals(), sort="cumtime")
        report = hygiene.check_gallery(app, "big")
        wall = time.perf_counter() - t0
        print(
            f"check: {report.photos} photos vs {report.photos * 2} in {wall:.2f} s, "
            f"{len(report.findings)} findings"
        )
        app.close()


if __name__ == "__main__":
    main()
