"""Calibration on real photos, the embedding cache, and resilience to broken files."""

from __future__ import annotations

import logging
import math
import shutil
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vigil.core.config import Settings
from vigil.core.modelcard import bundled_card
from vigil.eval.calibrate import (
    FMR_LADDER,
    CalibrationReport,
    apply_calibration,
    fmr_ladder,
    list_identities,
    pair_scores,
    run_calibration,
)
from vigil.eval.embed import cache_path, embed_files, fallback_box


@pytest.fixture(scope="module")
def deepface_report(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CalibrationReport, Settings]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("vigil-calib"))
    return run_calibration(settings, shared_data / "deepface-13", workers=2), settings


def _count_folder(root: Path) -> dict[str, list[Path]]:
    """Independent listing: identity folders not starting with _ or ., their .jpg files."""
    out = {}
    for d in sorted(root.iterdir()):
        if d.is_dir() and d.name[0] not in "_.":
            out[d.name] = sorted(f for f in d.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return out


def test_deepface_calibration(deepface_report: tuple[CalibrationReport, Settings], shared_data: Path) -> None:
    report, settings = deepface_report
    cal = report.calibration
    root = shared_data / "deepface-13"
    listing = _count_folder(root)
    assert sum(len(v) for v in listing.values()) == 61
    assert not report.unreadable
    left_out = set(report.no_face)
    used = {k: [p for p in v if p not in left_out] for k, v in listing.items()}
    n = sum(len(v) for v in used.values())
    genuine = sum(math.comb(len(v), 2) for v in used.values())
    assert cal.dataset == "deepface-13"
    assert cal.images == n
    assert cal.identities == sum(1 for v in used.values() if v)
    assert cal.genuine_pairs == genuine
    assert cal.impostor_pairs == math.comb(n, 2) - genuine
    assert sum(cal.genuine_hist) == cal.genuine_pairs
    assert sum(cal.impostor_hist) == cal.impostor_pairs
    assert len(cal.hist_edges) == 201 and cal.hist_edges[0] == -1.0 and cal.hist_edges[-1] == 1.0
    assert len(report.no_face) <= 6  # HOG finds most of these frontal press photos

    # The ladder: only measurable rates, threshold rising as FMR falls.
    fmrs = [f for f, _ in cal.fmr_thresholds]
    thresholds = [t for _, t in cal.fmr_thresholds]
    assert len(fmrs) >= 3
    assert fmrs == sorted(fmrs, reverse=True)
    assert all(f in FMR_LADDER for f in fmrs)
    assert all(math.floor(f * cal.impostor_pairs + 1e-9) >= 10 for f in fmrs)
    assert all(b > a for a, b in pairwise(thresholds))
    assert set(cal.fnmr_at_fmr) == {str(f) for f in fmrs}
    fnmrs = [cal.fnmr_at_fmr[str(f)] for f in fmrs]
    assert all(0.0 <= x <= 1.0 for x in fnmrs)
    assert fnmrs == sorted(fnmrs)  # stricter threshold, more false non-matches

    # Check each threshold against a brute-force count over the full score matrix (cached embeddings).
    paths = [p for v in used.values() for p in v]
    labels = np.array([k for k, v in enumerate(used.values()) for _ in v])
    emb = embed_files(settings, paths, workers=1)
    assert emb.detected.all()
    s = emb.vectors.astype(np.float64) @ emb.vectors.astype(np.float64).T
    iu = np.triu_indices(len(paths), 1)
    same = labels[iu[0]] == labels[iu[1]]
    imp, gen = s[iu][~same], s[iu][same]
    for f, t in cal.fmr_thresholds:
        assert int((imp >= t).sum()) == math.floor(f * len(imp) + 1e-9)
        assert cal.fnmr_at_fmr[str(f)] == pytest.approx(np.mean(gen < t), abs=1e-9)

    card = apply_calibration(bundled_card("dlib-resnet-v1"), cal)
    assert card.calibration == cal
    assert card.id == "dlib-resnet-v1"
    assert card.threshold_for_fmr(fmrs[1]) == pytest.approx(thresholds[1])


def test_list_identities_skips_hidden(shared_data: Path) -> None:
    ids = list_identities(shared_data / "deepface-13")
    assert len(ids) == 13
    assert not any(k.startswith("_") for k in ids)


def test_pair_scores_blocks_match_full_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    import vigil.eval.calibrate as cal_mod

    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    labels = np.repeat(np.arange(60), 5)
    monkeypatch.setattr(cal_mod, "_BLOCK_ELEMENTS", 300 * 7)  # 7 rows per block
    stats = pair_scores(v, labels, keep_top=4426)  # 10 % of the impostor pairs, plus one
    s = v.astype(np.float64) @ v.astype(np.float64).T
    iu = np.triu_indices(300, 1)
    same = labels[iu[0]] == labels[iu[1]]
    imp = np.sort(s[iu][~same])[::-1]
    assert stats.impostor_pairs == len(imp)
    assert len(stats.genuine) == int(same.sum())
    np.testing.assert_allclose(stats.impostor_top, imp[:4426], atol=1e-5)
    gen = s[iu][same]
    hist = np.histogram(np.clip(s[iu][~same], -1, 1), bins=np.linspace(-1, 1, 201))[0]
    assert np.abs(stats.impostor_hist - hist).sum() <= 2  # float32 against float64 at bin edges
    points, fnmr = fmr_ladder(stats)
    # 44,250 impostor pairs: 3e-4 leaves 13 above the threshold, 1e-4 only 4.
    assert [f for f, _ in points] == [0.1, 0.03, 0.01, 0.003, 0.001, 0.0003]
    for f, t in points:
        assert int((imp >= t).sum()) == math.floor(f * len(imp) + 1e-9)
        assert fnmr[str(f)] == pytest.approx(np.mean(gen < t))


# -- cache and broken files -----------------------------------------------------------------------


def _lfw_images(shared_data: Path, n: int) -> list[Path]:
    root = shared_data / "lfw-dev"
    return [root / "Aaron_Peirsol" / f"Aaron_Peirsol_{i:04d}.jpg" for i in range(1, 5)][:n]


def test_cache_makes_second_run_fast(  # type: ignore[no-untyped-def]
    shared_data: Path, tmp_path: Path, engine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path)
    paths = _lfw_images(shared_data, 4)
    t0 = time.perf_counter()
    first = embed_files(settings, paths, workers=1, engine=engine)
    t1 = time.perf_counter()
    second = embed_files(settings, paths, workers=1)  # no engine: a full cache needs none
    t2 = time.perf_counter()
    assert cache_path(settings, "dlib-resnet-v1", "hog").is_file()
    assert not list(cache_path(settings, "dlib-resnet-v1", "hog").parent.glob("*.tmp"))
    np.testing.assert_array_equal(first.vectors, second.vectors)
    np.testing.assert_array_equal(first.detected, second.detected)
    assert first.detected.all()
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)
    assert t2 - t1 < 0.25 * (t1 - t0)
    assert t2 - t1 < 0.2

    # Other detection settings: a cache of their own, the first one left as it was.
    other = Settings(data_dir=tmp_path, detect_min_confidence=0.6)
    assert cache_path(other, "dlib-resnet-v1", "hog") != cache_path(settings, "dlib-resnet-v1", "hog")
    with caplog.at_level(logging.INFO, logger="vigil.eval.embed"):
        third = embed_files(other, paths[:1], workers=1)
    assert "embedding 1 of 1 images" in caplog.text
    np.testing.assert_allclose(third.vectors[0], first.vectors[0], atol=1e-6)
    assert cache_path(other, "dlib-resnet-v1", "hog").is_file()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vigil.eval.embed"):
        embed_files(settings, paths, workers=1)
    assert "embedding 0 of 4 images (4 cached" in caplog.text  # the first cache still serves them all


def test_unreadable_and_faceless_files(shared_data: Path, tmp_path: Path) -> None:
    """A broken file is counted, a faceless image falls back; neither stops embedding or calibration."""
    root = tmp_path / "set"
    lfw = shared_data / "lfw-dev"
    for name in ("Aaron_Peirsol", "Abdullah", "Abel_Pacheco"):
        (root / name).mkdir(parents=True)
        for src in sorted((lfw / name).glob("*.jpg"))[:2]:
            shutil.copy(src, root / name / src.name)
    (root / "Abdullah" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (250, 250), (128, 128, 128)).save(root / "Abel_Pacheco" / "grey.png")
    (root / "_ignored").mkdir()
    (root / "_ignored" / "x.jpg").write_bytes(b"nothing")

    settings = Settings(data_dir=tmp_path / "data")
    paths = [
        *sorted((root / "Aaron_Peirsol").iterdir()),
        root / "Abdullah" / "broken.jpg",
        root / "Abel_Pacheco" / "grey.png",
        tmp_path / "missing.jpg",
    ]
    emb = embed_files(settings, paths, workers=2)
    assert len(emb) == 5
    assert [p for p, _ in emb.errors] == [root / "Abdullah" / "broken.jpg", tmp_path / "missing.jpg"]
    assert emb.ok.tolist() == [True, True, False, True, False]
    assert np.isnan(emb.vectors[[2, 4]]).all()
    assert emb.detected.tolist() == [True, True, False, False, False]
    assert emb.fallbacks == 1
    assert np.isfinite(emb.vectors[3]).all()

    report = run_calibration(settings, root, workers=1, dataset_name="tiny")
    cal = report.calibration
    assert [p for p, _ in report.unreadable] == [root / "Abdullah" / "broken.jpg"]
    assert report.no_face == [root / "Abel_Pacheco" / "grey.png"]
    assert (cal.dataset, cal.identities, cal.images) == ("tiny", 3, 6)
    assert (cal.genuine_pairs, cal.impostor_pairs) == (3, 12)
    assert cal.fmr_thresholds == []  # 12 impostor pairs are too few for any rate


def test_fallback_box_scales() -> None:
    np.testing.assert_allclose(fallback_box(250, 250), [[70, 70, 180, 180]])
    box = fallback_box(1000, 500)
    assert box[0, 2] - box[0, 0] == pytest.approx(220)
    assert (box[0, 0] + box[0, 2]) / 2 == pytest.approx(500)
    assert (box[0, 1] + box[0, 3]) / 2 == pytest.approx(250)
