"""Identification over an approximate gallery index decides as exact search does, on real faces.

Real dlib embeddings of LFW photos (the session's engine) are enrolled, mixed into 20,000 synthetic
distractor templates drawn from a Gaussian fitted to those embeddings (so they sit where faces sit,
not at random on the sphere), and every probe face is identified twice over the same catalog: once
with the index exact, once with a low ``index_approximate_above`` so the gallery's index is IVF.
Faces whose best score comes near the threshold are searched again exhaustively, so decisions (and
their best matches) are exact; the others' best matches may differ (measured: most agree)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select, update

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import MultipleFacesError, NoFaceError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.storage.tables import Gallery, Identity, Template
from vigil.vision.image import load_image

ENROLLED, UNKNOWN, DISTRACTORS = 30, 12, 20_000
FIRST_DISTRACTOR_ID = 10_000_000


def _people(lfw: Path) -> list[list[Path]]:
    return [
        photos for p in sorted(lfw.iterdir()) if p.is_dir() and len(photos := sorted(p.glob("*.jpg"))) >= 2
    ]


def _add_distractors(app: App, model_id: str, real: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    v = real.mean(0) + rng.standard_normal((DISTRACTORS, real.shape[1])) * real.std(0)
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype("<f4")
    with app.db.session() as s:
        gid = s.scalar(select(Gallery.id).where(Gallery.name == "watch"))
        ids = range(FIRST_DISTRACTOR_ID, FIRST_DISTRACTOR_ID + DISTRACTORS)
        s.execute(insert(Identity), [{"id": i, "gallery_id": gid, "name": f"distractor-{i}"} for i in ids])
        s.execute(
            insert(Template),
            [
                {
                    "id": i,
                    "identity_id": i,
                    "model_id": model_id,
                    "dimension": real.shape[1],
                    "vector": v[n].tobytes(),
                    "quality": 1.0,
                    "source_sha256": f"{i:064x}",
                }
                for n, i in enumerate(ids)
            ],
        )
        s.execute(update(Gallery).where(Gallery.id == gid).values(generation=Gallery.generation + 1))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, engine, shared_data: Path):  # type: ignore[no-untyped-def]
    """(data dir, probe faces embedded once, names of the probes' people); the catalog as above."""
    data_dir = tmp_path_factory.mktemp("approx")
    app = App(Settings(data_dir=data_dir), engine_override=engine)
    galleries.create_gallery(app, galleries.validate_spec(name="watch", kind="reference"))
    people, enrolled, probes, real = _people(shared_data / "lfw-dev"), 0, [], []
    for photos in people:
        name = photos[0].parent.name
        if enrolled < ENROLLED:
            try:
                enrolment.enroll(app, "watch", name, [load_image(photos[0])], largest=True)
            except (NoFaceError, MultipleFacesError):
                continue
            enrolled += 1
        elif len(probes) >= ENROLLED + UNKNOWN:
            break
        image = load_image(photos[1])
        faces = app.engine.embed(image.bgr, app.engine.detect(image.bgr))
        if len(faces):
            probes.append((name, faces))
            real.append(faces.embedding)
    _add_distractors(app, engine.card.id, np.concatenate(real))
    app.close()
    return data_dir, probes


def _identify_all(app: App, probes: list) -> list[list[tuple[str | None, list[tuple[str, float, float]]]]]:  # type: ignore[type-arg]
    out = []
    for _, faces in probes:
        result = matching.identify_faces(app, faces, ["watch"], top_k=3)
        out.append(
            [(f.decision, [(m.identity, m.score, m.threshold) for m in f.matches]) for f in result.faces]
        )
    return out


def test_approximate_index_gives_exact_decisions_on_real_faces(catalog, engine) -> None:  # type: ignore[no-untyped-def]
    data_dir, probes = catalog
    exact_app = App(Settings(data_dir=data_dir, index_approximate_above=10**9), engine_override=engine)
    approx_app = App(Settings(data_dir=data_dir, index_approximate_above=5_000), engine_override=engine)
    try:
        exact = _identify_all(exact_app, probes)
        meta = next((data_dir / "index").glob("*.json"))
        assert json.loads(meta.read_text())["kind"] == "exact"
        approx = _identify_all(approx_app, probes)
        assert json.loads(meta.read_text())["kind"] == "ivf"  # the policy change rebuilt it approximate
    finally:
        exact_app.close()
        approx_app.close()
    names = [name for name, _ in probes]
    top1 = sum(
        bool(m) and m[0][0] == name for name, faces in zip(names, exact, strict=True) for _, m in faces
    )
    right = sum(d == name for name, faces in zip(names, exact, strict=True) for d, _ in faces)
    print(f"exact: top-1 right {top1}, decided right {right} of {ENROLLED} mated probes")
    assert top1 >= ENROLLED * 2 // 3 and right >= ENROLLED // 4  # real, mated probes: not a vacuous check
    agree = total = rechecked = 0
    margin = Settings().index_recheck_margin
    for e_faces, a_faces in zip(exact, approx, strict=True):
        for (e_decision, e_matches), (a_decision, a_matches) in zip(e_faces, a_faces, strict=True):
            assert a_decision == e_decision
            total += 1
            agree += a_matches[0][0] == e_matches[0][0]
            _, best, threshold = e_matches[0]
            if best >= threshold:  # a match above the threshold was found near enough to be rechecked
                assert a_matches[0][1] >= threshold - margin
            if a_matches[0][1] >= threshold - margin:  # near the threshold: searched exhaustively again
                rechecked += 1
                assert [m[0] for m in a_matches] == [m[0] for m in e_matches]
                np.testing.assert_allclose([m[1] for m in a_matches], [m[1] for m in e_matches], atol=1e-5)
    print(f"rechecked {rechecked} of {total} faces, top-1 agreement {agree}")
    assert 0 < rechecked < total  # both paths were taken
    # the others' best matches are far distractors in a near tie; IVF may return another one
    assert agree / total >= 0.7, f"top-1 agreement {agree}/{total}"
