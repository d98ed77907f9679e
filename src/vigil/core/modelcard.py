"""Model cards: what a model is, how to feed it, its licence and its calibrated thresholds.

Scores are cosine similarities of L2-normalised embeddings (higher = more alike). A card's
calibration holds the impostor score at a ladder of false-match rates, measured on a
folder-per-identity set by ``vigil calibrate``. From it:

- 1:1 verification uses ``threshold_for_fmr(target_fmr)``;
- 1:N open-set identification against a gallery of N identities uses the per-comparison FMR that
  gives the target false-positive identification rate, FPIR = 1 - (1 - FMR)^N, so
  FMR = 1 - (1 - FPIR)^(1/N), and the threshold for that FMR.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vigil.core.errors import ModelError


class Preprocessing(BaseModel):
    """How an embedder wants its input."""

    model_config = ConfigDict(extra="forbid")
    alignment: Literal["dlib68-chip", "dlib5-chip", "arcface5-112"]
    """dlib68-chip / dlib5-chip: dlib's face chip from its 68- or 5-point landmarks (found on the face box);
    arcface5-112: a similarity transform of 5 points onto the ArcFace template."""
    input_size_wh: tuple[int, int]
    color: Literal["RGB", "BGR"] = "RGB"
    mean: float = 0.0
    std: float = 1.0
    padding: float = 0.25


class Calibration(BaseModel):
    """Score distributions measured on a labelled set."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    measured_on: date
    identities: int
    images: int
    genuine_pairs: int
    impostor_pairs: int
    fmr_thresholds: list[tuple[float, float]] = Field(
        description="(false-match rate, cosine threshold) pairs, FMR decreasing"
    )
    fnmr_at_fmr: dict[str, float] = Field(default_factory=dict, description="FNMR at the FMRs of the ladder")
    hist_edges: list[float] = Field(default_factory=list)
    genuine_hist: list[int] = Field(default_factory=list)
    impostor_hist: list[int] = Field(default_factory=list)


class ModelCard(BaseModel):
    """Describes one embedding model."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="stable id stored with every template the model makes")
    name: str
    kind: Literal["embedder"] = "embedder"
    dimension: int = Field(gt=0)
    preprocessing: Preprocessing
    licence: str
    source: str
    file_sha256: str | None = None
    notes: str = ""
    default_threshold: float = Field(description="cosine threshold used when no calibration exists")
    calibration: Calibration | None = None

    # -- thresholds -------------------------------------------------------------------------------
    def threshold_for_fmr(self, fmr: float) -> float:
        """Cosine threshold whose measured false-match rate is ``fmr``.

        Interpolated log-linearly in FMR between calibration points. Below the smallest measured
        FMR the most conservative measured threshold is used, extrapolated along the last segment.
        """
        if not 0 < fmr < 1:
            raise ValueError(f"FMR must be in (0, 1), got {fmr}")
        if self.calibration is None or not self.calibration.fmr_thresholds:
            return self.default_threshold
        ladder = sorted(self.calibration.fmr_thresholds, key=lambda p: -p[0])
        if fmr >= ladder[0][0]:
            return ladder[0][1]
        for (f_hi, t_hi), (f_lo, t_lo) in itertools.pairwise(ladder):
            if f_lo <= fmr <= f_hi:
                w = (math.log(f_hi) - math.log(fmr)) / (math.log(f_hi) - math.log(f_lo))
                return t_hi + w * (t_lo - t_hi)
        # Beyond the data: extrapolate the last segment's slope, never loosen the threshold.
        if len(ladder) >= 2:
            (f_hi, t_hi), (f_lo, t_lo) = ladder[-2], ladder[-1]
            slope = (t_lo - t_hi) / (math.log(f_hi) - math.log(f_lo))
            return min(1.0, t_lo + max(slope, 0.0) * (math.log(f_lo) - math.log(fmr)))
        return ladder[-1][1]

    @staticmethod
    def fmr_for_fpir(fpir: float, gallery_size: int) -> float:
        """Per-comparison FMR giving false-positive identification rate ``fpir`` over N identities."""
        if not 0 < fpir < 1:
            raise ValueError(f"FPIR must be in (0, 1), got {fpir}")
        n = max(1, gallery_size)
        return -math.expm1(math.log1p(-fpir) / n)

    def threshold_for_fpir(self, fpir: float, gallery_size: int) -> float:
        """Cosine threshold for open-set identification against ``gallery_size`` identities."""
        return self.threshold_for_fmr(self.fmr_for_fpir(fpir, gallery_size))

    # -- files ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"model card {path} does not exist") from exc
        except ValueError as exc:
            raise ModelError(f"model card {path} is invalid: {exc}") from exc

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)


def bundled_card(model_id: str) -> ModelCard:
    """The card shipped with vigil for a default model."""
    name = f"{model_id}.json"
    try:
        text = resources.files("vigil.cards").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelError(f"no bundled model card for {model_id!r}") from exc
    return ModelCard.model_validate_json(text)


def load_card(model_id: str, cards_dir: Path) -> ModelCard:
    """The user's calibrated card in ``cards_dir`` if present, else the bundled one."""
    user = cards_dir / f"{model_id}.json"
    return ModelCard.load(user) if user.exists() else bundled_card(model_id)
