"""`vigil compare`: one gallery against another (or against itself), for a case."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, err, handle_errors, out, progress_bar
from vigil.investigation import compare as svc
from vigil.storage.audit import cli_actor

SHOWN = 50
"""Identity pairs printed in the human view (--json and --csv carry them all)."""


@handle_errors
def compare(
    gallery_a: Annotated[str, typer.Argument(help="the gallery whose templates are searched (probes)")],
    gallery_b: Annotated[str, typer.Argument(help="the gallery searched in; the same name finds duplicates")],
    case: Annotated[
        str | None, typer.Option("--case", help="the case reference (required; kept in the audit log)")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="identities of B kept per probe")] = 5,
    fpir: Annotated[
        float | None,
        typer.Option("--threshold-fpir", help="target FPIR for the threshold (default: VIGIL_TARGET_FPIR)"),
    ] = None,
    ivf: Annotated[
        bool, typer.Option("--ivf", help="approximate search (for very large B); its recall is reported")
    ] = False,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="write the identity pairs (or --pairs) as CSV to this file")
    ] = None,
    pairs: Annotated[
        bool, typer.Option("--pairs", help="CSV of every template pair, not identity pairs")
    ] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Search every template of GALLERY_A in GALLERY_B and list the pairs above the identification
    threshold (the model card's, for B's size at the target FPIR), best first. Audited with the case."""
    request = svc.CompareRequest(
        gallery_a=gallery_a,
        gallery_b=gallery_b,
        case=case,
        top_k=top_k,
        fpir=fpir,
        index="ivf" if ivf else "exact",
    )
    plan = svc.plan_comparison(app(), request)
    with progress_bar(f"{gallery_a} in {gallery_b}", plan.templates_a) as update:
        result = svc.run_comparison(app(), plan, actor=cli_actor(), progress=update)
    level: Literal["identities", "pairs"] = "pairs" if pairs else "identities"
    if csv_out is not None:
        csv_out.write_text(svc.to_csv(result, level), encoding="utf-8")
        err.print(f"wrote {len(result.pairs if pairs else result.identities):,} rows to {csv_out}")
    emit(result, as_json, lambda: _render(result))


def _render(result: svc.CompareResult) -> None:
    what = "within" if result.within else "against"
    out.print(
        f"case {escape(result.case)}: {result.templates_a:,} templates of {escape(result.gallery_a)!r} "
        f"{what} {result.templates_b:,} of {escape(result.gallery_b)!r} "
        f"({result.identities_b:,} identities), "
        f"{result.index} search, {result.elapsed_s:.1f} s"
    )
    out.print(f"threshold {result.threshold:.4f}: {escape(result.threshold_source)}")
    if result.recall is not None:
        out.print(
            f"approximate search recall on {result.recall_sample} probes: "
            f"{result.recall:.1%} of the k nearest"
            + (
                f", {result.recall_above_threshold:.1%} of the pairs above the threshold"
                if result.recall_above_threshold is not None
                else ""
            )
        )
    if not result.identities:
        out.print("no pair above the threshold")
        return
    table = Table("score", "A", "B", "template pairs", title="identity pairs above the threshold, best first")
    for p in result.identities[:SHOWN]:
        table.add_row(
            f"{p.score:.4f}",
            f"{escape(p.identity_a)} ({p.identity_a_id})",
            f"{escape(p.identity_b)} ({p.identity_b_id})",
            str(p.template_pairs),
        )
    out.print(table)
    if len(result.identities) > SHOWN:
        out.print(f"... and {len(result.identities) - SHOWN:,} more (see --json or --csv)")
    out.print("every pair is a lead for a person to check, not a finding")
