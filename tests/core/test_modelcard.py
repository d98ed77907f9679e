import math

import numpy as np
import pytest

from vigil.core.errors import ModelError
from vigil.core.modelcard import Calibration, ModelCard, Preprocessing, bundled_card, load_card


def _card(ladder: list[tuple[float, float]] | None) -> ModelCard:
    cal = None
    if ladder is not None:
        cal = Calibration(
            dataset="x",
            measured_on="2026-01-01",
            identities=1,
            images=1,
            genuine_pairs=1,
            impostor_pairs=1,
            fmr_thresholds=ladder,
        )
    return ModelCard(
        id="m",
        name="m",
        dimension=4,
        licence="x",
        source="x",
        default_threshold=0.5,
        calibration=cal,
        preprocessing=Preprocessing(alignment="arcface5-112", input_size_wh=(112, 112)),
    )


def test_threshold_interpolates_log_linearly_in_fmr() -> None:
    card = _card([(1e-2, 0.6), (1e-3, 0.7), (1e-4, 0.8)])
    assert card.threshold_for_fmr(1e-3) == pytest.approx(0.7)
    assert card.threshold_for_fmr(math.sqrt(1e-3 * 1e-4)) == pytest.approx(0.75)
    assert card.threshold_for_fmr(0.5) == pytest.approx(0.6)  # looser than measured: clamp
    assert card.threshold_for_fmr(1e-5) == pytest.approx(0.9)  # extrapolated, stricter
    assert _card(None).threshold_for_fmr(1e-3) == 0.5


def test_fpir_to_fmr_matches_the_definition() -> None:
    for fpir, n in [(0.01, 1), (0.01, 1000), (0.1, 10**6)]:
        fmr = ModelCard.fmr_for_fpir(fpir, n)
        assert 1 - (1 - fmr) ** n == pytest.approx(fpir, rel=1e-6)
    card = _card([(1e-2, 0.6), (1e-3, 0.7), (1e-4, 0.8), (1e-5, 0.85)])
    # a bigger gallery needs a stricter threshold for the same FPIR
    thresholds = [card.threshold_for_fpir(0.01, n) for n in (1, 10, 100, 1000)]
    assert np.all(np.diff(thresholds) > 0)


def test_bundled_card_loads_and_user_card_overrides(tmp_path) -> None:
    card = bundled_card("dlib-resnet-v1")
    assert card.dimension == 128
    assert load_card("dlib-resnet-v1", tmp_path).id == card.id
    custom = card.model_copy(update={"default_threshold": 0.5, "calibration": None})
    custom.save(tmp_path / "dlib-resnet-v1.json")
    assert load_card("dlib-resnet-v1", tmp_path).default_threshold == 0.5
    with pytest.raises(ModelError):
        bundled_card("no-such-model")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match="invalid"):
        ModelCard.load(tmp_path / "bad.json")
