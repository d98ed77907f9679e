"""Retrospective search on real sightings: finds the person where they were, nothing where they were
not, always with a case reference in the audit log."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from sighting_seed import Seed

from vigil.app import App
from vigil.core.errors import InputError, MultipleFacesError, NotFoundError
from vigil.investigation import search
from vigil.storage import audit
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs

PNG = b"\x89PNG\r\n\x1a\n"


def request(seed: Seed, *cameras: str, case: str = "case 2024/117") -> search.SearchRequest:
    return search.SearchRequest(case=case, since=seed.since, until=seed.until, cameras=cameras)


def test_search_by_photo_finds_his_sightings_and_nothing_where_he_was_not(
    inv_app: App, seed: Seed, people: Path
) -> None:
    lin = search.Probe(image=load_image(people / "lin-manuel-miranda.png"))
    card = inv_app.engine.card
    found = search.search(inv_app, lin, request(seed, "hall"), "user:ines")
    # He appears twice in the clip (a wide shot and a close-up): both sightings, and only his.
    assert len(found.hits) >= 2
    assert {h.identity_id for h in found.hits} == {seed.lin_id}
    assert [h.score for h in found.hits] == sorted((h.score for h in found.hits), reverse=True)
    assert all(h.camera == "hall" and h.score >= found.threshold and h.crop_sha256 for h in found.hits)
    assert all(seed.since <= h.first_seen <= h.last_seen <= seed.until for h in found.hits)
    assert found.threshold == pytest.approx(card.threshold_for_fpir(found.fpir, found.searched), abs=1e-6)
    assert found.fpir == inv_app.settings.target_fpir and found.searched >= 2
    # A clip without him: three other people, six sightings, no hit.
    lobby = search.search(inv_app, lin, request(seed, "lobby"), "user:ines")
    assert lobby.searched == 6 and lobby.hits == []
    # Outside the window: nothing searched.
    later = search.SearchRequest(
        case="case 2024/117", since=seed.until, until=seed.until + timedelta(hours=1), cameras=("hall",)
    )
    assert search.search(inv_app, lin, later, "user:ines").searched == 0
    # Someone else's photo finds nothing in the hall.
    alex = search.Probe(image=load_image(people / "alex-lacamoire.png"))
    assert search.search(inv_app, alex, request(seed, "hall"), "user:ines").hits == []


def test_search_by_identity_uses_its_templates(inv_app: App, seed: Seed) -> None:
    found = search.search(inv_app, search.Probe(identity_id=seed.lin_id), request(seed, "hall"), "user:ines")
    assert len(found.hits) >= 2 and found.probe_sha256 is None and found.identity_id == seed.lin_id
    with pytest.raises(NotFoundError):
        search.search(inv_app, search.Probe(identity_id=9999), request(seed), "user:ines")


def test_every_search_is_audited_with_its_case_and_a_search_without_one_is_refused(
    inv_app: App, seed: Seed, people: Path
) -> None:
    image = load_image(people / "lin-manuel-miranda.png")
    lin = search.Probe(image=image)
    before = len(audit.entries(inv_app, action="retrospective_search"))
    for case in ("", "   "):
        with pytest.raises(InputError, match="case reference"):
            search.search(inv_app, lin, request(seed, "hall", case=case), "user:ines")
    assert len(audit.entries(inv_app, action="retrospective_search")) == before
    result = search.search(inv_app, lin, request(seed, "hall", "lobby", case=" INC-42 "), "user:ines")
    entry = audit.entries(inv_app, action="retrospective_search")[-1]
    assert entry.id == result.audit_id and entry.actor == "user:ines"
    d = entry.detail
    assert d["case"] == "INC-42" and d["probe_sha256"] == image.sha256 == result.probe_sha256
    assert d["cameras"] == ["hall", "lobby"] and d["since"] == seed.since.isoformat()
    assert d["threshold"] == result.threshold and d["searched"] == result.searched
    assert d["hits"] == [{"sighting": h.sighting_id, "score": h.score} for h in result.hits]
    assert audit.verify(inv_app).ok


@pytest.mark.parametrize(
    ("probe", "change", "error", "message"),
    [
        ("two_people.jpg", {}, MultipleFacesError, "faces found"),
        (None, {}, InputError, "photo or an identity"),
        ("lin-manuel-miranda.png", {"cameras": ("nowhere",)}, NotFoundError, "no camera"),
        ("lin-manuel-miranda.png", {"until": None}, InputError, "window is empty"),
    ],
)
def test_bad_searches_are_refused(
    inv_app: App,
    seed: Seed,
    people: Path,
    probe: str | None,
    change: dict[str, object],
    error: type,
    message: str,
) -> None:
    p = search.Probe(image=load_image(people / probe) if probe else None)
    fields: dict[str, object] = {"case": "C-1", "since": seed.since, "until": seed.until, **change}
    if fields["until"] is None:
        fields["until"] = seed.since
    with pytest.raises(error, match=message):
        search.search(inv_app, p, search.SearchRequest(**fields), "user:ines")  # type: ignore[arg-type]


def test_timeline_plot(inv_app: App, seed: Seed, people: Path) -> None:
    lin = search.Probe(image=load_image(people / "lin-manuel-miranda.png"))
    result = search.search(inv_app, lin, request(seed, "hall", "lobby"), "user:ines")
    png = search.timeline_png(result)
    assert png.startswith(PNG) and len(png) > 5000
    encoded = search.with_timeline(result).timeline_png
    assert encoded is not None and base64.b64decode(encoded).startswith(PNG)
    empty = search.search(inv_app, lin, request(seed, "lobby"), "user:ines")
    assert search.timeline_png(empty).startswith(PNG)
