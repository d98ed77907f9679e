"""Calibration: genuine and impostor score distributions of an embedder on a labelled image set.

The set is a folder per identity (``root/<identity>/<images>``); folders whose name starts with
``_`` or ``.`` are ignored. Every image is embedded once (see :mod:`vigil.eval.embed`); images in
which no face was detected are left out, since a calibration must describe real detections. All
pairs of the remaining images are scored: pairs within an identity are genuine, pairs across
identities are impostors (identities with one image contribute impostor pairs only).

For each false-match rate of the ladder, the threshold is exact: with N impostor pairs and
k = floor(FMR * N), it lies between the k-th and (k+1)-th highest impostor scores, so k impostor
pairs score at or above it. Rates with fewer than 10 impostor pairs above the threshold are not
reported (too few to measure).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.core.modelcard import Calibration, ModelCard
from vigil.eval.embed import embed_files
from vigil.vision.image import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

FMR_LADDER: tuple[float, ...] = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
MIN_IMPOSTORS_ABOVE = 10
HIST_BINS = 200
_BLOCK_ELEMENTS = 4_000_000
"""Score-matrix elements computed at once (float32: 16 MB, plus masks)."""


def _hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def list_identities(root: Path) -> dict[str, list[Path]]:
    """Identity name -> its image files (sorted), for a folder-per-identity set.

    Folders starting with ``_`` or ``.`` and files that are hidden or not images are ignored;
    identities without images are left out.

    Raises:
        InputError: ``root`` is not a folder.
    """
    if not root.is_dir():
        raise InputError(f"{root}: not a folder", hint="give a folder with one sub-folder per identity")
    out: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p.name)):
        images = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not _hidden(p.name) and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if images:
            out[folder.name] = images
    return out


# -- score distributions --------------------------------------------------------------------------
@dataclass
class ScoreStats:
    """Pair-score statistics of a labelled embedding set.

    Attributes:
        genuine: (g,) float32 all genuine pair scores.
        impostor_pairs: number of impostor pairs scored.
        impostor_top: (k,) float32 the k highest impostor scores, descending (k = ``keep_top``).
        hist_edges: (bins + 1,) float64 histogram edges over [-1, 1].
        genuine_hist, impostor_hist: (bins,) int64 counts (scores clipped into [-1, 1]).
    """

    genuine: npt.NDArray[np.float32]
    impostor_pairs: int
    impostor_top: npt.NDArray[np.float32]
    hist_edges: npt.NDArray[np.float64]
    genuine_hist: npt.NDArray[np.int64]
    impostor_hist: npt.NDArray[np.int64]


def impostor_pair_count(labels: npt.NDArray[np.int64]) -> int:
    """Pairs of the (n,) ``labels`` with different labels."""
    n = len(labels)
    sizes = np.unique(labels, return_counts=True)[1].astype(np.int64)
    return n * (n - 1) // 2 - int((sizes * (sizes - 1) // 2).sum())


def pair_scores(
    vectors: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    *,
    keep_top: int,
    bins: int = HIST_BINS,
) -> ScoreStats:
    """Score every pair of (n, d) float32 unit ``vectors`` with (n,) int64 identity ``labels``.

    The (n, n) score matrix is computed in row blocks of its upper triangle, so memory stays at
    about ``_BLOCK_ELEMENTS`` scores plus the ``keep_top`` highest impostor scores.
    """
    n = len(vectors)
    v = np.ascontiguousarray(vectors, np.float32)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    gen_hist = np.zeros(bins, np.int64)
    imp_hist = np.zeros(bins, np.int64)
    genuine: list[npt.NDArray[np.float32]] = []
    top = np.zeros(0, np.float32)
    n_imp = 0
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for a in range(0, n, rows):
        b = min(n, a + rows)
        s = v[a:b] @ v[a:].T  # (b - a, n - a)
        upper = np.arange(a, n)[None, :] > np.arange(a, b)[:, None]
        same = labels[a:b, None] == labels[None, a:]
        gen = s[upper & same]
        imp = s[upper & ~same]
        genuine.append(gen)
        n_imp += len(imp)
        gen_hist += np.histogram(np.clip(gen, -1, 1), bins=edges)[0]
        imp_hist += np.histogram(np.clip(imp, -1, 1), bins=edges)[0]
        if keep_top > 0 and len(imp):
            if len(top) >= keep_top:
                imp = imp[imp > top.min()]
            merged = np.concatenate([top, imp])
            if len(merged) > keep_top:
                merged = np.partition(merged, len(merged) - keep_top)[len(merged) - keep_top :]
            top = merged
    return ScoreStats(
        genuine=np.concatenate(genuine) if genuine else np.zeros(0, np.float32),
        impostor_pairs=n_imp,
        impostor_top=np.sort(top)[::-1].astype(np.float32),
        hist_edges=edges,
        genuine_hist=gen_hist,
        impostor_hist=imp_hist,
    )


def fmr_ladder(
    stats: ScoreStats, ladder: tuple[float, ...] = FMR_LADDER, min_above: int = MIN_IMPOSTORS_ABOVE
) -> tuple[list[tuple[float, float]], dict[str, float]]:
    """(FMR, threshold) for the measurable rates of ``ladder`` and the FNMR at each (key ``str(FMR)``).

    FNMR is the share of genuine scores below the threshold; it is left out without genuine pairs.
    """
    points: list[tuple[float, float]] = []
    fnmr: dict[str, float] = {}
    top = stats.impostor_top.astype(np.float64)
    genuine = stats.genuine.astype(np.float64)
    for fmr in sorted(ladder, reverse=True):
        k = math.floor(fmr * stats.impostor_pairs + 1e-9)
        if k < min_above or k >= len(top):
            continue
        t = cut_below_top(top, k)
        points.append((fmr, t))
        if len(genuine):
            fnmr[str(fmr)] = float(np.mean(genuine < t))
    return points, fnmr


def cut_below_top(top_desc: npt.NDArray[np.float64], k: int) -> float:
    """Threshold accepting (``>=`` or ``>``) the ``k`` highest scores, k >= 1.

    ``top_desc`` holds the highest scores in descending order, more than k of them; the threshold
    is the midpoint between the k-th and (k+1)-th.
    """
    hi, lo = float(top_desc[k - 1]), float(top_desc[k])
    mid = (hi + lo) / 2
    return mid if mid > lo else hi


# -- calibration ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationReport:
    """A calibration and the images it left out: no face detected, or unreadable (with the reason)."""

    calibration: Calibration
    no_face: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def run_calibration(
    settings: Settings,
    root: Path,
    *,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    dataset_name: str | None = None,
) -> CalibrationReport:
    """Calibrate the engine ``settings`` describe on the folder-per-identity set at ``root``.

    Raises:
        InputError: ``root`` is not a folder, or too few usable images for any impostor pair.
    """
    identities = list_identities(root)
    paths = [p for images in identities.values() for p in images]
    labels_all = np.array([k for k, images in enumerate(identities.values()) for _ in images], np.int64)
    embedded = embed_files(settings, paths, workers=workers, progress=progress)
    ok = embedded.ok
    use = ok & embedded.detected
    no_face = [p for p, o, d in zip(paths, ok, embedded.detected, strict=True) if o and not d]
    if no_face:
        log.warning("%d of %d images left out of the calibration: no face detected", len(no_face), len(paths))
    if embedded.errors:
        log.warning(
            "%d of %d images left out of the calibration: unreadable", len(embedded.errors), len(paths)
        )

    vectors = embedded.vectors[use]
    labels = labels_all[use]
    n_imp = impostor_pair_count(labels)
    if n_imp == 0:
        raise InputError(
            f"{root}: no impostor pairs (need faces of at least two identities)",
            hint="give a folder with one sub-folder per identity and photos showing a face",
        )
    keep_top = min(n_imp, math.floor(max(FMR_LADDER) * n_imp + 1e-9) + 1)
    stats = pair_scores(vectors, labels, keep_top=keep_top)
    points, fnmr = fmr_ladder(stats)
    if not points:
        log.warning("%d impostor pairs are too few to measure any false-match rate of the ladder", n_imp)
    calibration = Calibration(
        dataset=dataset_name or root.resolve().name,
        measured_on=date.today(),
        identities=len(np.unique(labels)),
        images=len(vectors),
        genuine_pairs=len(stats.genuine),
        impostor_pairs=stats.impostor_pairs,
        fmr_thresholds=points,
        fnmr_at_fmr=fnmr,
        hist_edges=[round(float(e), 6) for e in stats.hist_edges],
        genuine_hist=[int(c) for c in stats.genuine_hist],
        impostor_hist=[int(c) for c in stats.impostor_hist],
    )
    return CalibrationReport(calibration=calibration, no_face=no_face, unreadable=list(embedded.errors))


def calibrate(
    settings: Settings,
    root: Path,
    *,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    dataset_name: str | None = None,
) -> Calibration:
    """The :class:`Calibration` of :func:`run_calibration` (left-out images are logged)."""
    return run_calibration(
        settings, root, workers=workers, progress=progress, dataset_name=dataset_name
    ).calibration


def apply_calibration(card: ModelCard, calibration: Calibration) -> ModelCard:
    """A copy of ``card`` carrying ``calibration`` (validated again)."""
    data = card.model_dump()
    data["calibration"] = calibration.model_dump()
    return ModelCard.model_validate(data)
