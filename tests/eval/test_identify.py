"""`vigil eval identify`: the open-set 1:N protocol, checked against numpy recomputations."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.eval.identify import (
    SearchScores,
    fnir_fpir,
    run_identification,
    threshold_at_fpir,
    write_identify_report,
)


def test_threshold_at_fpir_keeps_fpir_at_or_below_the_target() -> None:
    nonmated = np.array([0.1, 0.5, 0.9, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.0])
    t, resolved = threshold_at_fpir(nonmated, 0.2)  # 2 of 10 may pass: 0.9 and 0.8
    assert resolved and 0.7 < t <= 0.8 and np.mean(nonmated >= t) == 0.2
    t, resolved = threshold_at_fpir(nonmated, 0.01)  # none may pass, and 0.01 is not resolvable with 10
    assert not resolved and t > 0.9 and np.mean(nonmated >= t) == 0.0
    with_misses = np.array([-np.inf, -np.inf, 0.5])
    t, _ = threshold_at_fpir(with_misses, 0.5)  # one may pass; only one finite score
    assert np.mean(with_misses >= t) <= 0.5
    scores = SearchScores(
        mated_top=np.array([0.9, 0.4, 0.95]),
        mated_hit=np.array([True, True, False]),
        mated_rank=np.array([1, 1, 2]),
        nonmated_top=nonmated,
    )
    fnir, fpir = fnir_fpir(scores, 0.85)
    assert fnir == pytest.approx(2 / 3) and fpir == pytest.approx(0.1)


@pytest.fixture(scope="module")
def deepface_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path_factory.mktemp("vigil-data"))
    root = shared_data / "deepface-13"
    return root, settings, *run_identification(settings, root, mated=7, seed=3)


def test_identify_protocol_on_deepface(deepface_run) -> None:  # type: ignore[no-untyped-def]
    root, _, result, scores = deepface_run
    n_images = sum(
        1 for d in root.iterdir() if d.is_dir() and not d.name.startswith("_") for _ in d.iterdir()
    )
    assert result.enrolled == 7
    assert result.enrolled + result.mated_searches + result.nonmated_searches == n_images
    assert (
        len(scores.mated_top) == result.mated_searches
        and len(scores.nonmated_top) == result.nonmated_searches
    )
    assert result.rank1 == pytest.approx(float(np.mean(scores.mated_rank == 1)))
    assert result.rank1 >= 0.9  # the foundation's bar on this set is top-1 >= 95 % with all enrolled
    thresholds = []
    for p in result.operating_points:
        # Independent recomputation from the raw top scores.
        fpir = float(np.mean(scores.nonmated_top >= p.threshold))
        fnir = float(np.mean(~(scores.mated_hit & (scores.mated_top >= p.threshold))))
        assert (p.fpir, p.fnir) == (pytest.approx(fpir), pytest.approx(fnir))
        assert p.fpir <= p.target_fpir + 1e-12
        assert p.resolved == (p.target_fpir * result.nonmated_searches >= 1)
        thresholds.append(p.threshold)
    assert thresholds == sorted(thresholds)  # stricter FPIR, higher threshold


def test_identify_report_files(deepface_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, result, scores = deepface_run
    write_identify_report(result, scores, tmp_path, "vigil eval identify --root x")
    data = json.loads((tmp_path / "identify.json").read_text())
    assert data["rank1"] == result.rank1 and len(data["scores"]["nonmated_top"]) == result.nonmated_searches
    png = (tmp_path / "det.png").read_bytes()
    assert (
        png[:8] == b"\x89PNG\r\n\x1a\n"
        and cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None
    )
    page = (tmp_path / "report.html").read_text()
    assert "FNIR at FPIR 0.01" in page and "data:image/png;base64," in page


def test_identify_bad_input(deepface_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, settings, _, _ = deepface_run
    with pytest.raises(InputError, match="--mated 99"):
        run_identification(settings, root, mated=99)
    (tmp_path / "one").mkdir()
    with pytest.raises(InputError, match="two identity folders"):
        run_identification(settings, tmp_path)


def test_cli_eval_identify_and_calibrate(run, shared_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, _ = run(
        "eval",
        "identify",
        "--root",
        str(shared_data / "deepface-13"),
        "--mated",
        "5",
        "--json",
        "--out",
        str(tmp_path / "rep"),
    )
    data = json.loads(out)
    assert data["enrolled"] == 5 and {p["target_fpir"] for p in data["operating_points"]} == {
        0.1,
        0.01,
        0.003,
    }
    assert (tmp_path / "rep" / "report.html").is_file()

    out, _ = run("eval", "calibrate", "--fpir", "0.01", "--json", "--plot", str(tmp_path / "thr.png"))
    rows = json.loads(out)["rows"]
    thresholds = [r["threshold"] for r in rows]
    assert thresholds == sorted(thresholds)  # a bigger gallery needs a higher threshold
    for r in rows:  # FPIR = 1 - (1 - FMR)^N
        assert 1 - (1 - r["fmr"]) ** r["gallery_size"] == pytest.approx(0.01, rel=1e-6)
    assert (tmp_path / "thr.png").read_bytes()[:4] == b"\x89PNG"

    # Measured on a set of the user's instead of the card's calibration (the card is not changed).
    out, _ = run("eval", "calibrate", "--fpir", "0.1", "--root", str(shared_data / "deepface-13"), "--json")
    measured = json.loads(out)
    assert measured["calibrated_on"] == "deepface-13"
    assert [r["threshold"] for r in measured["rows"]] == sorted(r["threshold"] for r in measured["rows"])
    out, _ = run("eval", "calibrate", "--json")
    assert json.loads(out)["calibrated_on"] == "lfw-dev"
