"""`vigil eval lfw` and `vigil calibrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vigil.cli.common import JsonOpt, emit, err, handle_errors, out, progress_bar, settings
from vigil.core.errors import InputError

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
        result = evaluate_lfw(settings(), root, pairs, train_pairs, workers=workers, progress=update)
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
    s = settings()
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
