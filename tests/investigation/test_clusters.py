"""Unknown-face clusters: three unknown people walking through twice make three clusters; a promoted
cluster becomes a recognised identity; the algorithm is incremental."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sighting_seed import Seed

from vigil.app import App
from vigil.core.errors import ConflictError, ForbiddenError, NotFoundError
from vigil.gallery import galleries, matching
from vigil.investigation import clusters
from vigil.storage import audit
from vigil.storage.tables import ClusterState
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs

WALK_GAP_S = 160 / 25.0  # each person's second walk starts 160 frames after the first


def test_three_unknown_people_twice_each_make_three_clusters(inv_app: App, seed: Seed) -> None:
    report = clusters.update(inv_app, "user:ines")
    assert report.new_clusters == 3 and report.clustered == 6
    assert report.threshold == pytest.approx(
        inv_app.engine.card.threshold_for_fmr(inv_app.settings.target_fmr)
    )
    found = clusters.list_clusters(inv_app)
    assert sorted(c.size for c in found) == [2, 2, 2]
    for c in found:
        detail = clusters.get_cluster(inv_app, c.id)
        assert c.cameras == ["lobby"] and len(detail.members) == 2 and c.cover_sha256
        a, b = detail.members
        # The two sightings of one person are the two walks, 6.4 s apart (not two people seen together).
        assert abs((b.first_seen - a.first_seen).total_seconds() - WALK_GAP_S) < 0.5
        assert c.first_seen == a.first_seen and c.last_seen == b.last_seen
    # Matched sightings (Lin-Manuel Miranda, on the watchlist) are never clustered.
    assert all(m.identity_id is None for c in found for m in clusters.get_cluster(inv_app, c.id).members)
    assert audit.entries(inv_app, action="cluster_update")[-1].detail["new_clusters"] == 3
    # Nothing new: a second update changes nothing.
    again = clusters.update(inv_app)
    assert again.new_clusters == again.assigned == 0
    assert [c.id for c in clusters.list_clusters(inv_app)] == [c.id for c in found]


def test_promote_enrols_the_crops_and_the_person_is_then_recognised(
    inv_app: App, seed: Seed, shared_data: Path
) -> None:
    clusters.update(inv_app)
    galleries.create_gallery(
        inv_app, galleries.validate_spec(name="visitors", kind="reference", purpose="test")
    )
    lfw = shared_data / "lfw-dev"
    photo = load_image(lfw / "Hans_Blix" / "Hans_Blix_0006.jpg")  # not one the clip was made from
    assert matching.identify(inv_app, photo, ["visitors"]).faces[0].decision is None
    # Find Hans Blix's cluster by the crops' likeness to the photo.
    probe = inv_app.engine.analyze(photo.bgr).embedding
    assert probe is not None
    best = max(
        clusters.list_clusters(inv_app),
        key=lambda c: float(
            np.mean([_score(inv_app, m.id, probe[0]) for m in clusters.get_cluster(inv_app, c.id).members])
        ),
    )
    report = clusters.promote(inv_app, best.id, "visitors", "Visitor 1", "user:ines")
    assert report.enrolled + len(report.skipped) == 2 and report.enrolled >= 1
    result = matching.identify(inv_app, photo, ["visitors"])
    assert result.faces[0].decision == "Visitor 1"
    detail = clusters.get_cluster(inv_app, best.id)
    assert detail.state == ClusterState.promoted and detail.promoted_identity_id == report.identity_id
    assert detail.decided_by == "user:ines"
    assert {m.identity_id for m in detail.members} == {report.identity_id}
    entry = audit.entries(inv_app, action="cluster_promote")[-1]
    assert entry.target_id == str(best.id) and entry.detail["enrolled"] == report.enrolled
    with pytest.raises(ConflictError):
        clusters.promote(inv_app, best.id, "visitors", "Visitor 2", "user:ines")
    other = next(c for c in clusters.list_clusters(inv_app) if c.id != best.id)
    assert (
        clusters.dismiss(inv_app, other.id, "user:ines", "a delivery driver").state == ClusterState.dismissed
    )
    assert audit.entries(inv_app, action="cluster_dismiss")[-1].detail["reason"] == "a delivery driver"
    assert len(clusters.list_clusters(inv_app)) == 1 and len(clusters.list_clusters(inv_app, None)) == 3
    with pytest.raises(NotFoundError):
        clusters.dismiss(inv_app, 999, "user:ines")
    # Promotion into an attendance gallery needs the person's consent, as any enrolment there.
    galleries.create_gallery(inv_app, galleries.validate_spec(name="staff", kind="attendance"))
    (last,) = clusters.list_clusters(inv_app)
    with pytest.raises(ForbiddenError, match="consent"):
        clusters.promote(inv_app, last.id, "staff", "Colleague", "user:ines")
    assert clusters.get_cluster(inv_app, last.id).state == ClusterState.open
    consented = clusters.promote(
        inv_app, last.id, "staff", "Colleague", "user:ines", consent_on=date.today(), consent_by="HR"
    )
    assert consented.enrolled >= 1 and clusters.list_clusters(inv_app) == []


def _score(app: App, sighting_id: int, probe: np.ndarray) -> float:
    from vigil.investigation import sightings
    from vigil.storage.tables import Sighting

    with app.db.session() as s:
        row = s.get(Sighting, sighting_id)
        assert row is not None
        return float(sightings.vector_of(row) @ probe)


def test_incremental_assignment_and_batches_on_arrays() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def around(ids: np.ndarray) -> np.ndarray:
        v = centres[ids] + rng.normal(scale=0.02, size=(len(ids), 128)).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    truth = rng.integers(0, 40, 900)
    labels, n = clusters.cluster_vectors(around(truth), 0.93, batch=200)  # several batches
    assert n == len(set(labels.tolist())) == 40
    for c in range(40):  # one label per centre, one centre per label
        assert len(set(labels[truth == c].tolist())) == 1
    # Incremental: new sightings of known people join the existing clusters; a new person forms a new one.
    existing = [around(np.full(3, c)) for c in range(5)]
    new_truth = np.array([0, 1, 2, 3, 4, 7, 7])
    labels, n = clusters.cluster_vectors(around(new_truth), 0.93, existing)
    assert labels[:5].tolist() == [0, 1, 2, 3, 4] and labels[5] == labels[6] == 5 and n == 6


def test_clusters_of_another_model_are_never_compared(inv_app: App, seed: Seed) -> None:
    """Sightings of an earlier model (128-d) stay in their clusters; the current model's are clustered
    among themselves (a switch of model packs must never compare templates of two models)."""
    from sqlalchemy import update

    from vigil.storage.tables import Sighting

    first = clusters.update(inv_app)
    assert first.new_clusters == 3
    with inv_app.db.session() as s:  # the clustered sightings become another model's, of another size
        s.execute(
            update(Sighting)
            .where(Sighting.cluster_id.is_not(None))
            .values(model_id="old-model", dimension=64, vector=np.full(64, 0.125, np.float32).tobytes())
        )
        s.commit()
    again = clusters.update(inv_app)
    assert again.assigned == 0 and again.new_clusters == 0
