"""The LFW verification protocol: pair files, 10-fold accuracy, TAR at FAR, ROC/DET plots.

Scores are cosine similarities of the L2-normalised embeddings of the two images of a pair; a pair
is accepted as "same person" when ``score >= threshold``.

Every LFW image is centred on its subject, so each image is represented by the face nearest the
centre among *all* the detector's candidates (confidence down to ``LFW_MIN_CONFIDENCE``), not only
those above the operational ``detect_min_confidence`` that guards live video against false
detections; a centred box stands in when there is none (see :mod:`vigil.eval.embed`).

Pair files (image path = ``root/name/name_%04d.jpg``):

- View 1 (``pairsDevTrain.txt``, ``pairsDevTest.txt``): a first line ``N``, then N matched lines
  ``name i j`` and N mismatched lines ``name1 i name2 j``. For the 10-fold protocol the matched and
  the mismatched pairs are each cut, in file order, into 10 contiguous folds of equal size.
- View 2 (``pairs.txt``): a first line ``10 300`` (folds, pairs per class per fold), then for each
  fold its 300 matched and then its 300 mismatched lines.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.eval.embed import embed_files

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

FARS = (0.01, 0.001)
"""False-accept rates at which the true-accept rate is reported (keys ``str(far)``)."""

N_FOLDS = 10

LFW_MIN_CONFIDENCE = 0.5
"""Detector confidence down to which the central face is taken (0.5 = dlib HOG's weakest margin)."""


# -- pair files -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LfwPair:
    """One line of a pair file; ``fold`` is 0..9 (for View 1, the fold it is assigned to)."""

    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int

    def paths(self, root: Path) -> tuple[Path, Path]:
        return image_path(root, self.name1, self.index1), image_path(root, self.name2, self.index2)


def image_path(root: Path, name: str, index: int) -> Path:
    """``root/name/name_%04d.jpg``."""
    return root / name / f"{name}_{index:04d}.jpg"


def _parse_line(fields: list[str], same: bool, where: str) -> tuple[str, int, str, int]:
    try:
        if same and len(fields) == 3:
            return fields[0], int(fields[1]), fields[0], int(fields[2])
        if not same and len(fields) == 4:
            return fields[0], int(fields[1]), fields[2], int(fields[3])
    except ValueError:
        pass
    want = "name i j" if same else "name1 i name2 j"
    raise InputError(
        f"{where}: expected a {'matched' if same else 'mismatched'} pair '{want}'",
        hint="give an LFW pairs file (pairs.txt, pairsDevTrain.txt or pairsDevTest.txt)",
    )


def _view1_folds(n: int) -> npt.NDArray[np.int64]:
    """(n,) int64 fold of each of n pairs of one class: 10 contiguous, equal (to within one) chunks."""
    return (np.arange(n, dtype=np.int64) * N_FOLDS) // max(n, 1)


def find_image_root(root: Path, pairs: list[LfwPair]) -> Path:
    """``root``, or the one folder below it that holds the pairs' images (``lfw/`` of the archive).

    The folder that holds the images of most of the first 20 pairs wins; ``root`` itself when none does.
    """
    sample = [p for pair in pairs[:20] for p in pair.paths(Path())]

    def found(folder: Path) -> int:
        return sum((folder / p).is_file() for p in sample)

    if not root.is_dir() or found(root) == len(sample):
        return root
    candidates = [root, *sorted(d for d in root.iterdir() if d.is_dir())]
    best = max(candidates, key=found)
    if best != root and found(best) > found(root):
        log.info("LFW images found under %s", best)
        return best
    return root


def read_pairs(path: Path) -> list[LfwPair]:
    """Parse an LFW View 1 or View 2 pair file (format detected from the first line).

    Raises:
        InputError: the file is missing or not in either format.
    """
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the pairs file ({exc.strerror or exc})", hint="check the path"
        ) from exc
    lines = [ln for ln in lines if ln]
    bad_header = InputError(
        f"{path}:1: the first line must be 'N' (View 1) or 'folds N' (View 2)", hint="give an LFW pairs file"
    )
    if not lines or len(lines[0]) not in (1, 2) or not all(f.isdigit() for f in lines[0]):
        raise bad_header
    header = [int(f) for f in lines[0]]
    folds, per = (1, header[0]) if len(header) == 1 else (header[0], header[1])
    if folds < 1 or per < 1:
        raise bad_header
    body = lines[1:]
    if len(body) != 2 * folds * per:
        raise InputError(
            f"{path}: the header announces {2 * folds * per} pairs, the file has {len(body)}",
            hint="the file is truncated or not an LFW pairs file",
        )
    pairs: list[LfwPair] = []
    view1_fold = _view1_folds(per)
    for f in range(folds):
        for k in range(2 * per):
            same = k < per
            line_no = 2 + f * 2 * per + k
            n1, i1, n2, i2 = _parse_line(body[line_no - 2], same, f"{path}:{line_no}")
            fold = f if folds > 1 else int(view1_fold[k % per])
            pairs.append(LfwPair(n1, i1, n2, i2, same, fold))
    return pairs


# -- metrics --------------------------------------------------------------------------------------
def accuracy_at(scores: F64, same: Bools, threshold: float) -> float:
    """Share of pairs classified right by ``score >= threshold``; scores and same are (n,)."""
    return float(np.mean((scores >= threshold) == same))


def best_threshold(scores: F64, same: Bools) -> tuple[float, float]:
    """The threshold maximising accuracy on (n,) float64 ``scores`` with (n,) bool labels ``same``.

    Candidates are the lowest score (accept all), the midpoints between consecutive distinct scores
    and the next float above the highest (accept none); of equally accurate ones, the lowest wins.

    Returns:
        (threshold, accuracy at it).
    """
    n = len(scores)
    if n == 0:
        raise ValueError("no scores to choose a threshold from")
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores, np.float64)[order]
    y = np.asarray(same, np.bool_)[order]
    # Threshold just below s[j] accepts s[j:]: correct = genuine in s[j:] + impostors in s[:j].
    gen_below = np.concatenate([[0], np.cumsum(y)])
    imp_below = np.arange(n + 1) - gen_below
    correct = (gen_below[-1] - gen_below) + imp_below
    valid = np.ones(n + 1, np.bool_)
    valid[1:n] = s[1:] > s[:-1]  # only cut between distinct values
    j = int(np.argmax(np.where(valid, correct, -1)))
    if j == 0:
        threshold = float(s[0])
    elif j == n:
        threshold = float(np.nextafter(s[-1], np.inf))
    else:
        threshold = float((s[j - 1] + s[j]) / 2)
        if threshold <= s[j - 1]:  # adjacent floats
            threshold = float(s[j])
    return threshold, float(correct[j] / n)


def kfold_accuracy(scores: F64, same: Bools, folds: npt.NDArray[np.int64]) -> tuple[list[float], list[float]]:
    """Per-fold test accuracy and threshold; each fold's threshold is chosen on all other folds.

    Args:
        scores: (n,) float64; same: (n,) bool; folds: (n,) int64 fold ids.

    Returns:
        (accuracies, thresholds), one of each per distinct fold id, in fold order.
    """
    accs: list[float] = []
    thresholds: list[float] = []
    for f in np.unique(folds):
        test = folds == f
        t, _ = best_threshold(scores[~test], same[~test])
        accs.append(accuracy_at(scores[test], same[test], t))
        thresholds.append(t)
    return accs, thresholds


def threshold_for_far(impostor: F64, far: float) -> float:
    """The impostor-score quantile at false-accept rate ``far``, for (m,) ``impostor`` scores.

    With k = floor(far * m) it is the (k+1)-th highest impostor score: k impostors (absent ties)
    score above it, so accepting scores strictly above it gives FAR <= ``far``.
    """
    m = len(impostor)
    if m == 0:
        raise ValueError("no impostor scores")
    k = math.floor(far * m + 1e-9)
    ranked = np.sort(np.asarray(impostor, np.float64))[::-1]
    return float(ranked[k]) if k < m else float(np.nextafter(ranked[-1], -np.inf))


def tar_at_far(scores: F64, same: Bools, far: float) -> tuple[float, float]:
    """True-accept rate at false-accept rate ``far`` on (n,) ``scores`` with (n,) bool ``same``.

    Returns:
        (TAR, threshold): the threshold of :func:`threshold_for_far` on the impostor scores and
        the share of genuine scores above it.
    """
    t = threshold_for_far(scores[~same], far)
    genuine = scores[same]
    return (float(np.mean(genuine > t)) if len(genuine) else math.nan), t


# -- evaluation -----------------------------------------------------------------------------------
class LfwResult(BaseModel):
    """Outcome of an LFW evaluation. ``scores`` and ``same`` are left out of JSON unless asked."""

    model_config = ConfigDict(extra="forbid")
    accuracy: float = Field(description="mean test accuracy over folds (or on the test pairs)")
    std: float = Field(description="standard deviation of the fold accuracies (0 for train/test)")
    pairs: int = Field(description="test pairs scored")
    tar_at_far: dict[str, float] = Field(description="true-accept rate at false-accept rate str(far)")
    threshold: float = Field(description="cosine threshold (mean over folds for 10-fold)")
    protocol: str = Field(description="'10-fold' or 'train/test'")
    fallbacks: int = Field(description="images embedded from the fallback box (no face detected)")
    model: str
    fold_accuracies: list[float] = Field(default_factory=list)
    skipped_pairs: int = Field(default=0, description="pairs left out: an image was missing or unreadable")
    scores: list[float] = Field(default_factory=list, exclude=True, description="test pair cosine scores")
    same: list[bool] = Field(default_factory=list, exclude=True, description="test pair labels")

    def to_dict(self, *, include_scores: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the per-pair ``scores`` and ``same`` only with ``include_scores``."""
        out = self.model_dump(mode="json")
        if include_scores:
            out["scores"] = list(self.scores)
            out["same"] = list(self.same)
        return out


def _pair_scores(
    pairs: Sequence[LfwPair],
    root: Path,
    index: dict[Path, int],
    vectors: npt.NDArray[np.float32],
    ok: Bools,
) -> tuple[F64, Bools, npt.NDArray[np.int64], int]:
    """(scores, same, folds, skipped) for the pairs whose two images were embedded."""
    a = np.empty(len(pairs), np.int64)
    b = np.empty(len(pairs), np.int64)
    for k, pair in enumerate(pairs):
        p1, p2 = pair.paths(root)
        a[k], b[k] = index[p1], index[p2]
    keep = ok[a] & ok[b]
    a, b = a[keep], b[keep]
    v = vectors.astype(np.float64)
    scores = np.einsum("ij,ij->i", v[a], v[b])
    same = np.array([p.same for p in pairs], np.bool_)[keep]
    folds = np.array([p.fold for p in pairs], np.int64)[keep]
    return scores, same, folds, int((~keep).sum())


def evaluate_lfw(
    settings: Settings,
    root: Path,
    pairs_file: Path,
    train_pairs_file: Path | None = None,
    *,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> LfwResult:
    """Verification accuracy on LFW pairs with the engine ``settings`` describe.

    Without ``train_pairs_file``: the 10-fold protocol on ``pairs_file`` (each fold's threshold is
    chosen on the other nine). With it: the threshold is chosen on the train pairs and accuracy is
    measured on the test pairs (``std`` 0). TAR at FAR uses all test pair scores.

    Raises:
        InputError: a pairs file is unreadable, or too few pairs could be scored.
    """
    test_pairs = read_pairs(pairs_file)
    train_pairs = read_pairs(train_pairs_file) if train_pairs_file is not None else []
    root = find_image_root(root, test_pairs)
    images: dict[Path, int] = {}
    for pair in (*test_pairs, *train_pairs):
        for p in pair.paths(root):
            images.setdefault(p, len(images))
    settings = settings.model_copy(
        update={"detect_min_confidence": min(settings.detect_min_confidence, LFW_MIN_CONFIDENCE)}
    )
    embedded = embed_files(settings, list(images), workers=workers, progress=progress)
    ok = embedded.ok
    scores, same, folds, skipped = _pair_scores(test_pairs, root, images, embedded.vectors, ok)
    if skipped:
        log.warning(
            "%d of %d test pairs skipped: an image was missing or unreadable", skipped, len(test_pairs)
        )
    if not same.any() or same.all():
        raise InputError(
            f"{pairs_file}: need both matched and mismatched pairs with readable images",
            hint=f"check that the images are under {root}",
        )

    if train_pairs:
        tr_scores, tr_same, _, tr_skipped = _pair_scores(train_pairs, root, images, embedded.vectors, ok)
        if tr_skipped:
            log.warning("%d of %d train pairs skipped", tr_skipped, len(train_pairs))
        if len(tr_scores) == 0:
            raise InputError(
                f"{train_pairs_file}: no train pair could be scored",
                hint=f"check that the images are under {root}",
            )
        threshold, _ = best_threshold(tr_scores, tr_same)
        accs = [accuracy_at(scores, same, threshold)]
        protocol, mean_t = "train/test", threshold
    else:
        if len(np.unique(folds)) < 2:
            raise InputError(
                f"{pairs_file}: the 10-fold protocol needs pairs in several folds",
                hint="give a file with at least 10 matched and 10 mismatched pairs",
            )
        accs, thresholds = kfold_accuracy(scores, same, folds)
        protocol, mean_t = "10-fold", float(np.mean(thresholds))

    return LfwResult(
        accuracy=float(np.mean(accs)),
        std=float(np.std(accs)) if len(accs) > 1 else 0.0,
        pairs=len(scores),
        tar_at_far={str(far): tar_at_far(scores, same, far)[0] for far in FARS},
        threshold=mean_t,
        protocol=protocol,
        fallbacks=embedded.fallbacks,
        model=embedded.model,
        fold_accuracies=accs if len(accs) > 1 else [],
        skipped_pairs=skipped,
        scores=scores.tolist(),
        same=same.tolist(),
    )


# -- plots ----------------------------------------------------------------------------------------
def roc_curve(scores: F64, same: Bools) -> tuple[F64, F64, F64]:
    """(far, tar, thresholds), each (k,) float64, one point per distinct score, threshold falling."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(same, np.bool_)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]  # end of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    n_gen, n_imp = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return fp / n_imp, tp / n_gen, s[last]


def plot_roc(
    scores: Sequence[float] | F64, same: Sequence[bool] | Bools, path: Path, title: str | None = None
) -> Path:
    """Write a PNG with the ROC (TAR against FAR, log FAR) and DET (FNMR against FMR) curves.

    Args:
        scores: (n,) cosine scores; same: (n,) bool labels; path: the PNG to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    far, tar, _ = roc_curve(np.asarray(scores, np.float64), np.asarray(same, np.bool_))
    n_imp = int((~np.asarray(same, np.bool_)).sum())
    floor = 1.0 / max(n_imp, 1) / 2
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    roc, det = fig.subplots(1, 2)
    roc.plot(np.maximum(far, floor), tar, lw=1.5)
    roc.set_xscale("log")
    roc.set_xlabel("false accept rate (FAR)")
    roc.set_ylabel("true accept rate (TAR)")
    roc.set_title("ROC")
    roc.grid(True, which="both", alpha=0.3)
    keep = far > 0
    det.plot(far[keep], np.maximum(1 - tar[keep], floor), lw=1.5)
    det.set_xscale("log")
    det.set_yscale("log")
    det.set_xlabel("false match rate (FMR)")
    det.set_ylabel("false non-match rate (FNMR)")
    det.set_title("DET")
    det.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
