"""Open-set 1:N identification, measured as NIST FRTE 1:N does.

On a folder-per-identity set: a random subset of the identities that have at least two images is
enrolled, one image each (the gallery). Every other image of an enrolled identity is a *mated* search;
every image of an identity not enrolled is a *non-mated* search. Each search returns its top candidates
by cosine score.

- rank-1: the share of mated searches whose top candidate is the mate (no threshold).
- FPIR(T): the share of non-mated searches whose top score is >= T.
- FNIR(T): the share of mated searches whose top candidate is not the mate, or scores below T.
- For each target FPIR the threshold T is the smallest that keeps FPIR at or below the target;
  FNIR is reported there.

A search image in which no face is detected is a failure to acquire: a miss for a mated search, a
correct rejection for a non-mated one (as FRTE counts them). Enrolment images are chosen among
those with a detected face.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.eval.calibrate import list_identities
from vigil.eval.embed import embed_files

F64 = npt.NDArray[np.float64]
DEFAULT_FPIRS = (0.1, 0.01, 0.003)


class OperatingPoint(BaseModel):
    target_fpir: float
    threshold: float
    fpir: float
    """The FPIR measured at ``threshold`` (at most the target)."""
    fnir: float
    resolved: bool
    """False when there are too few non-mated searches to measure this FPIR (fewer than 1 / target)."""


class IdentifyEvalResult(BaseModel):
    dataset: str
    model: str
    seed: int
    enrolled: int
    mated_searches: int
    nonmated_searches: int
    failures_to_acquire: int
    """Searches without a usable face: ``no_face`` plus ``unreadable``."""
    no_face: int = 0
    """Searches in which the detector found no face (whatever a fallback box would give)."""
    unreadable: int = 0
    """Searches whose file could not be read or embedded (see the run's log for each reason)."""
    rank1: float
    rank5: float
    operating_points: list[OperatingPoint]
    embed_seconds: float
    search_ms_per_query: float


@dataclass(frozen=True)
class SearchScores:
    """Raw outcome of every search, for the figures and for checking them.

    Attributes:
        mated_top: (m,) top score of each mated search (-inf when no face was found).
        mated_hit: (m,) True where the top candidate is the mate.
        mated_rank: (m,) rank of the mate among the candidates (1-based; 0 = not returned).
        nonmated_top: (n,) top score of each non-mated search (-inf when no face was found).
    """

    mated_top: F64
    mated_hit: npt.NDArray[np.bool_]
    mated_rank: npt.NDArray[np.int64]
    nonmated_top: F64


def threshold_at_fpir(nonmated_top: F64, target: float) -> tuple[float, bool]:
    """The smallest threshold with FPIR <= ``target``, and whether the data resolve ``target``."""
    finite = np.sort(nonmated_top[np.isfinite(nonmated_top)])[::-1]
    n = len(nonmated_top)
    if n == 0:
        raise InputError("no non-mated searches: enrol fewer identities (--mated)")
    allowed = math.floor(target * n + 1e-9)
    resolved = allowed >= 1
    if allowed >= len(finite):
        return (-1.0), resolved  # every finite score may pass
    # Exactly ``allowed`` scores strictly above the (allowed+1)-th: put T just above it.
    return float(np.nextafter(finite[allowed], np.inf)), resolved


def fnir_fpir(scores: SearchScores, threshold: float) -> tuple[float, float]:
    fnir = float(np.mean(~(scores.mated_hit & (scores.mated_top >= threshold))))
    fpir = float(np.mean(scores.nonmated_top >= threshold))
    return fnir, fpir


def run_identification(
    settings: Settings,
    root: Path,
    *,
    mated: int | None = None,
    seed: int = 0,
    fpirs: tuple[float, ...] = DEFAULT_FPIRS,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[IdentifyEvalResult, SearchScores]:
    """Run the protocol on ``root`` (``root/<identity>/<images>``)."""
    import faiss

    people = list_identities(root)
    if len(people) < 2:
        raise InputError(f"{root}: needs at least two identity folders", hint="root/<person>/<images>")
    names = sorted(people)
    paths = [p for n in names for p in people[n]]
    labels = np.array([i for i, n in enumerate(names) for _ in people[n]], np.int64)
    started = time.monotonic()
    emb = embed_files(settings, paths, workers=workers, progress=progress)
    embed_seconds = time.monotonic() - started
    usable = emb.ok & emb.detected

    rng = np.random.default_rng(seed)
    candidates = [i for i in range(len(names)) if usable[labels == i].sum() >= 1 and (labels == i).sum() >= 2]
    if not candidates:
        raise InputError(f"{root}: no identity has two images with a detectable face")
    n_mated = len(candidates) // 2 if mated is None else mated
    if not 1 <= n_mated <= len(candidates):
        raise InputError(
            f"--mated {n_mated}: between 1 and {len(candidates)} identities here have two or more images"
        )
    enrolled_ids = np.sort(rng.choice(candidates, size=n_mated, replace=False))
    gallery_rows = []
    for ident in enrolled_ids:
        rows = np.flatnonzero((labels == ident) & usable)
        gallery_rows.append(int(rng.choice(rows)))
    gallery_rows_arr = np.asarray(gallery_rows, np.int64)
    enrolled_set = set(int(i) for i in enrolled_ids)
    searches = np.array([i for i in range(len(paths)) if i not in set(gallery_rows)], np.int64)
    is_mated = np.array([int(labels[i]) in enrolled_set for i in searches], np.bool_)

    index = faiss.IndexFlatIP(emb.vectors.shape[1])
    index.add(np.ascontiguousarray(emb.vectors[gallery_rows_arr]))
    k = min(20, n_mated)
    ok_searches = searches[usable[searches]]
    t0 = time.monotonic()
    scores_k, rows_k = index.search(np.ascontiguousarray(emb.vectors[ok_searches]), k)
    search_s = time.monotonic() - t0
    top = np.full(len(searches), -np.inf)
    cand_labels = np.full((len(searches), k), -1, np.int64)
    where = np.searchsorted(searches, ok_searches)
    top[where] = scores_k[:, 0]
    cand_labels[where] = labels[gallery_rows_arr][rows_k]
    truth = labels[searches]
    match = cand_labels == truth[:, None]
    rank = np.where(match.any(axis=1), match.argmax(axis=1) + 1, 0)
    scores = SearchScores(
        mated_top=top[is_mated],
        mated_hit=rank[is_mated] == 1,
        mated_rank=rank[is_mated].astype(np.int64),
        nonmated_top=top[~is_mated],
    )
    points = []
    for target in fpirs:
        threshold, resolved = threshold_at_fpir(scores.nonmated_top, target)
        fnir, fpir = fnir_fpir(scores, threshold)
        points.append(
            OperatingPoint(target_fpir=target, threshold=threshold, fpir=fpir, fnir=fnir, resolved=resolved)
        )
    mated_rank = scores.mated_rank
    result = IdentifyEvalResult(
        dataset=root.name,
        model=emb.model,
        seed=seed,
        enrolled=n_mated,
        mated_searches=int(is_mated.sum()),
        nonmated_searches=int((~is_mated).sum()),
        failures_to_acquire=int((~usable[searches]).sum()),
        no_face=int((emb.ok[searches] & ~emb.detected[searches]).sum()),
        unreadable=int((~emb.ok[searches]).sum()),
        rank1=float(np.mean(mated_rank == 1)) if len(mated_rank) else 0.0,
        rank5=float(np.mean((mated_rank >= 1) & (mated_rank <= 5))) if len(mated_rank) else 0.0,
        operating_points=points,
        embed_seconds=round(embed_seconds, 3),
        search_ms_per_query=round(1000 * search_s / max(1, len(ok_searches)), 4),
    )
    return result, scores


def det_curve(scores: SearchScores) -> tuple[F64, F64, F64]:
    """(thresholds, fpir, fnir) at every distinct finite non-mated and mated top score."""
    pool = np.concatenate([scores.nonmated_top, scores.mated_top])
    thresholds = np.unique(pool[np.isfinite(pool)])
    fpir = np.array([np.mean(scores.nonmated_top >= t) for t in thresholds])
    fnir = np.array([np.mean(~(scores.mated_hit & (scores.mated_top >= t))) for t in thresholds])
    return thresholds, fpir, fnir


def plot_det(scores: SearchScores, result: IdentifyEvalResult, path: Path) -> None:
    """A DET plot (FNIR against FPIR, log axes) with the operating points marked, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, fpir, fnir = det_curve(scores)
    floor = 1.0 / max(len(scores.nonmated_top), 1) / 2
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.step(np.maximum(fpir, floor), np.maximum(fnir, 1e-4), where="post", label=result.model)
    for p in result.operating_points:
        ax.plot(
            max(p.fpir, floor), max(p.fnir, 1e-4), "o", label=f"FPIR {p.target_fpir:g}: FNIR {p.fnir:.3f}"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FPIR (non-mated searches with a candidate above threshold)")
    ax.set_ylabel("FNIR (mated searches missed at rank 1)")
    ax.set_title(f"Open-set 1:N on {result.dataset}: {result.enrolled} enrolled")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


def html_report(title: str, rows: list[tuple[str, str]], png: Path | None, command: str) -> str:
    """A small self-contained HTML page: a table of figures and an embedded plot."""
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    img = ""
    if png is not None and png.is_file():
        data = base64.b64encode(png.read_bytes()).decode()
        img = f'<p><img alt="plot" src="data:image/png;base64,{data}"></p>'
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "td,th{border-bottom:1px solid #ddd;padding:.3em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table>{body}</table>{img}"
        f"<p>Produced by <code>{html.escape(command)}</code></p></body></html>"
    )


def write_identify_report(result: IdentifyEvalResult, scores: SearchScores, out: Path, command: str) -> None:
    """``out/identify.json``, ``out/det.png`` and ``out/report.html``."""
    out.mkdir(parents=True, exist_ok=True)
    data = result.model_dump(mode="json")
    data["scores"] = {
        "mated_top": [None if not np.isfinite(v) else float(v) for v in scores.mated_top],
        "mated_rank": scores.mated_rank.tolist(),
        "nonmated_top": [None if not np.isfinite(v) else float(v) for v in scores.nonmated_top],
    }
    import json

    (out / "identify.json").write_text(json.dumps(data, indent=1))
    plot_det(scores, result, out / "det.png")
    rows = [
        ("dataset", result.dataset),
        ("model", result.model),
        ("enrolled identities", str(result.enrolled)),
        ("mated / non-mated searches", f"{result.mated_searches} / {result.nonmated_searches}"),
        (
            "failures to acquire",
            f"{result.failures_to_acquire} ({result.no_face} no face found, {result.unreadable} unreadable); "
            "each counts as a miss (mated) or a correct rejection (non-mated)",
        ),
        ("rank-1 / rank-5", f"{result.rank1:.4f} / {result.rank5:.4f}"),
    ]
    for p in result.operating_points:
        note = "" if p.resolved else " (too few non-mated searches to resolve)"
        rows.append((f"FNIR at FPIR {p.target_fpir:g}", f"{p.fnir:.4f} (threshold {p.threshold:.4f}){note}"))
    rows.append(("search time per query", f"{result.search_ms_per_query} ms"))
    page = html_report(f"vigil eval identify: {result.dataset}", rows, out / "det.png", command)
    (out / "report.html").write_text(page)
