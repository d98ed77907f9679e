"""How the 1:N threshold for a target FPIR moves with the gallery's size, from the model card.

A gallery of N identities turns a per-comparison false-match rate FMR into FPIR = 1 - (1 - FMR)^N,
so holding FPIR fixed needs a smaller FMR, and so a higher threshold, as the gallery grows. Operators
see the table (``vigil eval calibrate``) to choose their target deliberately.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from vigil.core.modelcard import ModelCard

GALLERY_SIZES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


class ThresholdRow(BaseModel):
    gallery_size: int
    target_fpir: float
    fmr: float
    threshold: float
    calibrated: bool
    """False when the FMR is below the card's measured range (the threshold is extrapolated)."""


def threshold_table(
    card: ModelCard, fpirs: list[float], sizes: tuple[int, ...] = GALLERY_SIZES
) -> list[ThresholdRow]:
    lowest = min((f for f, _ in card.calibration.fmr_thresholds), default=1.0) if card.calibration else 1.0
    rows = []
    for n in sizes:
        for target in fpirs:
            fmr = ModelCard.fmr_for_fpir(target, n)
            rows.append(
                ThresholdRow(
                    gallery_size=n,
                    target_fpir=target,
                    fmr=fmr,
                    threshold=card.threshold_for_fpir(target, n),
                    calibrated=card.calibration is not None and fmr >= lowest,
                )
            )
    return rows


def plot_thresholds(rows: list[ThresholdRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for target in sorted({r.target_fpir for r in rows}):
        pts = [r for r in rows if r.target_fpir == target]
        ax.plot([r.gallery_size for r in pts], [r.threshold for r in pts], "o-", label=f"FPIR {target:g}")
        for r in pts:
            if not r.calibrated:
                ax.plot(r.gallery_size, r.threshold, "x", color="black")
    ax.set_xscale("log")
    ax.set_xlabel("identities in the gallery")
    ax.set_ylabel("cosine threshold")
    ax.set_title("Identification threshold by gallery size (x: beyond the measured range)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
