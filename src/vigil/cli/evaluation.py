"""`vigil eval lfw` and `vigil calibrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vigil.cli.common import JsonOpt, emit, err, handle_errors, out, progress_bar
from vigil.cli.common import settings as cli_settings
from vigil.core.config import Settings
from vigil.core.errors import InputError


def eval_settings() -> Settings:
    """The CLI's settings with the model pack the data directory uses made explicit.

    Evaluations and calibrations measure the models a deployment runs: ``VIGIL_MODEL_PACK`` if set,
    else the pack the catalog has active (or would choose, with no side effect), so the embedding
    processes and caches all see the one pack.
    """
    from vigil.app import App
    from vigil.vision.packs.resolve import resolve_pack, uses_custom_models

    s = cli_settings()
    if s.model_pack is not None or uses_custom_models(s):
        return s
    app = App(s)
    try:
        pack = resolve_pack(app, decide=False)
    finally:
        app.close()
    return s.model_copy(update={"model_pack": pack})


eval_cli = typer.Typer(help="Measure accuracy on public benchmarks.", no_args_is_help=True)


@eval_cli.command("lfw")
@handle_errors
def eval_lfw(
    root: Annotated[Path, typer.Option("--root", help="LFW image folder (<Person>/<Person>_NNNN.jpg)")],
    pairs: Annotated[Path, typer.Option("--pairs", help="pairs.txt (View 2) or pairsDevTest.txt (View 1)")],
    train_pairs: Annotated[
        Path | None, typer.Option("--train-pairs", help="View 1: choose the threshold on this file")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="processes")] = 2,
    plot: Annotated[Path | None, typer.Option("--plot", help="write a ROC/DET plot (PNG) here")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Verification accuracy on LFW: 10-fold (View 2 / a single pair file) or train/test (View 1)."""
    from vigil.eval.lfw import evaluate_lfw, plot_roc

    for path in (root, pairs, *([train_pairs] if train_pairs else [])):
        if not path.exists():
            raise InputError(f"{path} does not exist")
    with progress_bar("embedding LFW images") as update:
        result = evaluate_lfw(eval_settings(), root, pairs, train_pairs, workers=workers, progress=update)
    if plot is not None:
        plot_roc(result.scores, result.same, plot)
    summary = {
        "accuracy": result.accuracy,
        "std": result.std,
        "pairs": result.pairs,
        "tar_at_far": result.tar_at_far,
        "threshold": result.threshold,
        "protocol": result.protocol,
        "fallbacks": result.fallbacks,
        "model": result.model,
    }

    def render() -> None:
        out.print(
            f"LFW {result.protocol}: accuracy {100 * result.accuracy:.2f}% ± {100 * result.std:.2f} "
            f"on {result.pairs} pairs (model {result.model}, threshold {result.threshold:.4f})"
        )
        for far, tar in result.tar_at_far.items():
            out.print(f"  TAR {100 * tar:.2f}% at FAR {far}")
        if result.fallbacks:
            err.print(f"{result.fallbacks} images had no detected face; a centred box was used")

    emit(summary, as_json, render)


@handle_errors
def calibrate(
    root: Annotated[Path, typer.Argument(help="folder-per-identity image set (<identity>/<images>)")],
    name: Annotated[str | None, typer.Option("--name", help="dataset name recorded in the card")] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="write the card here (default: the data directory's cards/)")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    as_json: bool = JsonOpt,
) -> None:
    """Measure the model's genuine and impostor scores on a labelled set and write its card."""
    from vigil.eval.calibrate import apply_calibration
    from vigil.eval.calibrate import calibrate as run
    from vigil.vision.engine import build_embedder

    if not root.is_dir():
        raise InputError(f"{root} is not a folder", hint="give a folder with one sub-folder per identity")
    s = eval_settings()
    card = build_embedder(s).card
    with progress_bar("embedding images") as update:
        cal = run(s, root, workers=workers, progress=update, dataset_name=name)
    card = apply_calibration(card, cal)
    target = out_path or s.cards_dir / f"{card.id}.json"
    card.save(target)

    def render() -> None:
        out.print(f"calibrated {card.id} on {cal.dataset}: {cal.images} images, {cal.identities} identities")
        for fmr, thr in cal.fmr_thresholds:
            out.print(
                f"  FMR {fmr:g}: threshold {thr:.4f}  FNMR {cal.fnmr_at_fmr.get(str(fmr), float('nan')):.4f}"
            )
        out.print(f"card written to {target}")

    emit({"card": str(target), "calibration": cal.model_dump(mode="json")}, as_json, render)


def _command_line() -> str:
    import shlex
    import sys

    return "vigil " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@eval_cli.command("identify")
@handle_errors
def eval_identify(
    root: Annotated[Path, typer.Option("--root", help="folder-per-identity image set (<identity>/<images>)")],
    mated: Annotated[
        int | None,
        typer.Option("--mated", help="identities to enrol (default: half of those with 2+ images)"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed for the enrolled subset")] = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="write identify.json, det.png and report.html here")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    as_json: bool = JsonOpt,
) -> None:
    """Open-set 1:N identification (NIST FRTE protocol): rank-1, FNIR at FPIR 0.1, 0.01, 0.003."""
    from vigil.eval.identify import run_identification, write_identify_report

    with progress_bar("embedding images") as update:
        result, scores = run_identification(
            eval_settings(), root, mated=mated, seed=seed, workers=workers, progress=update
        )
    if out_dir is not None:
        write_identify_report(result, scores, out_dir, _command_line())

    def render() -> None:
        out.print(
            f"{result.dataset}: {result.enrolled} enrolled, {result.mated_searches} mated and "
            f"{result.nonmated_searches} non-mated searches"
        )
        out.print(
            f"  failures to acquire: {result.failures_to_acquire} ({result.no_face} no face found, "
            f"{result.unreadable} unreadable), counted as misses (mated) or rejections (non-mated)"
        )
        out.print(f"  rank-1 {result.rank1:.4f}  rank-5 {result.rank5:.4f}")
        for p in result.operating_points:
            note = "" if p.resolved else "  (too few non-mated searches to resolve this FPIR)"
            out.print(
                f"  FPIR {p.target_fpir:g}: FNIR {p.fnir:.4f} at threshold {p.threshold:.4f} "
                f"(measured FPIR {p.fpir:.4f}){note}"
            )
        out.print(f"  search {result.search_ms_per_query} ms per query")
        if out_dir is not None:
            out.print(f"report written to {out_dir / 'report.html'}")

    emit(result, as_json, render)


@eval_cli.command("video")
@handle_errors
def eval_video(
    manifest: Annotated[
        Path, typer.Option("--manifest", help="CSV: clip,identities (';'-separated); clips relative to it")
    ],
    stills: Annotated[
        Path | None,
        typer.Option(
            "--stills",
            help="photos to enrol: a folder per identity or files named after the person "
            "[default: stills/ beside the manifest]",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="write video.json, timeline.png and report.html here")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Watchlist alarms on clips with known content: correct, missed and false alarms, time to alarm."""
    from rich.markup import escape

    from vigil.eval.video import evaluate_video, write_video_report

    def warn(message: str) -> None:
        err.print(f"[yellow]warning[/]: {escape(message)}", markup=True)

    with progress_bar("watching clips (frames)") as update:
        result = evaluate_video(eval_settings(), manifest, stills, on_progress=update, on_warning=warn)
    if out_dir is not None:
        write_video_report(result, out_dir, _command_line())

    def render() -> None:
        for c in result.clips:
            out.print(
                f"{Path(c.clip).name}: present {', '.join(c.present) or '-'}; correct {c.correct_alarms}, "
                f"false {c.false_alarms}, missed {', '.join(c.missed) or '-'}"
                + (f"  [red]error: {escape(c.error)}[/]" if c.error else "")
            )
        out.print(
            f"overall: {result.correct_alarms} correct alarms, {result.false_alarms} false "
            f"({result.false_alarms_per_hour:g} per hour), {result.people_missed} of {result.people_present} "
            f"people missed, median time to first alarm {result.median_time_to_first_alarm_s} s"
        )

    emit(result, as_json, render)


@eval_cli.command("calibrate")
@handle_errors
def eval_calibrate(
    fpir: Annotated[list[float] | None, typer.Option("--fpir", help="target FPIR (repeatable)")] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="measure the scores on this folder-per-identity set (not saved) instead of the card's",
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the plot (PNG) here")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """How the identification threshold for a target FPIR rises with the gallery's size."""
    from rich.table import Table

    from vigil.eval.thresholds import GALLERY_SIZES, plot_thresholds, threshold_table
    from vigil.vision.engine import build_embedder

    s = eval_settings()
    card = build_embedder(s).card
    if root is not None:
        from vigil.eval.calibrate import apply_calibration
        from vigil.eval.calibrate import calibrate as measure

        if not root.is_dir():
            raise InputError(f"{root} is not a folder", hint="give a folder with one sub-folder per identity")
        with progress_bar("embedding images") as update:
            card = apply_calibration(card, measure(s, root, progress=update))
    targets = fpir or sorted({s.target_fpir, 0.1, 0.01, 0.001})
    table = threshold_table(card, targets, GALLERY_SIZES)
    if plot is not None:
        plot_thresholds(table, plot)

    def render() -> None:
        t = Table("gallery size", *[f"FPIR {f:g}" for f in targets], title=f"thresholds of {card.id}")
        for n in GALLERY_SIZES:
            t.add_row(
                f"{n:,}", *[f"{r.threshold:.4f} (FMR {r.fmr:.1e})" for r in table if r.gallery_size == n]
            )
        out.print(t)
        if root is not None and card.calibration is not None:
            cal = card.calibration
            err.print(
                f"measured on {cal.dataset}: {cal.images} images, {cal.identities} identities, "
                f"{cal.impostor_pairs:,} impostor pairs (not saved: `vigil calibrate` writes a card)"
            )
        if card.calibration is None:
            err.print(
                "this card has no calibration: thresholds extrapolate its default; run `vigil calibrate`"
            )

    calibrated_on = card.calibration.dataset if card.calibration else None
    emit(
        {"model": card.id, "calibrated_on": calibrated_on, "rows": [r.model_dump() for r in table]},
        as_json,
        render,
    )
