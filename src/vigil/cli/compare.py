"""`vigil compare`: one gallery against another (or against itself), for a case."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, err, handle_errors, out, progress_bar
from vigil.core.errors import InputError
from vigil.investigation import compare as svc
from vigil.investigation import compare_csv
from vigil.investigation import compare_jobs as jobs
from vigil.storage.audit import cli_actor

SHOWN = 50
"""Identity pairs printed in the human view (--json and --csv carry them all)."""


@handle_errors
def compare(
    gallery_a: Annotated[
        str | None, typer.Argument(help="the gallery whose templates are searched (probes)")
    ] = None,
    gallery_b: Annotated[
        str | None, typer.Argument(help="the gallery searched in; the same name finds duplicates")
    ] = None,
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
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="go on with an interrupted comparison job from its checkpoint"),
    ] = None,
    list_all: Annotated[bool, typer.Option("--list", help="list the comparison jobs and exit")] = False,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="write the identity pairs (or --pairs) as CSV to this file")
    ] = None,
    pairs: Annotated[
        bool, typer.Option("--pairs", help="CSV of every template pair, not identity pairs")
    ] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Search every template of GALLERY_A in GALLERY_B and list the pairs above the identification
    threshold (the model card's, for B's size at the target FPIR), best first. Audited with the case.

    The comparison is a job kept in the catalog: interrupted (Ctrl-C, a crash), it goes on from its
    checkpoint with `vigil compare --resume JOB`; `vigil compare --list` shows the jobs."""
    if list_all:
        listed: list[BaseModel] = list(jobs.list_jobs(app()))
        emit(listed, as_json, lambda: _render_jobs(listed))
        return
    job_id = resume if resume is not None else _new_job(gallery_a, gallery_b, case, top_k, fpir, ivf)
    info = jobs.job_info(app(), job_id)
    with progress_bar(f"{info.gallery_a} in {info.gallery_b}", info.total) as update:
        try:
            result = jobs.run_job(app(), job_id, progress=update)
        except KeyboardInterrupt:
            _interrupted(job_id)
            raise
    level: Literal["identities", "pairs"] = "pairs" if pairs else "identities"
    if csv_out is not None:
        csv_out.write_text(compare_csv.to_csv(result, level), encoding="utf-8")
        err.print(f"wrote {len(result.pairs if pairs else result.identities):,} rows to {csv_out}")
    emit(result, as_json, lambda: _render(result))


def _new_job(
    gallery_a: str | None, gallery_b: str | None, case: str | None, top_k: int, fpir: float | None, ivf: bool
) -> str:
    if gallery_a is None or gallery_b is None:
        raise InputError(
            "name the two galleries to compare (or --resume JOB, or --list)",
            hint="vigil compare wanted enrolled --case REF",
        )
    request = svc.CompareRequest(
        gallery_a=gallery_a,
        gallery_b=gallery_b,
        case=case,
        top_k=top_k,
        fpir=fpir,
        index="ivf" if ivf else "exact",
    )
    info = jobs.create_job(app(), svc.plan_comparison(app(), request), cli_actor())
    err.print(f"comparison job {info.id} (resume it with `vigil compare --resume {info.id}` if interrupted)")
    return info.id


def _interrupted(job_id: str) -> None:
    """Ctrl-C: the job keeps its last checkpoint and goes on with --resume."""
    info = jobs.job_info(app(), job_id)
    if info.state == "running":
        jobs.interrupt_job(app(), job_id)
    err.print(f"interrupted at {info.done:,} of {info.total:,}: `vigil compare --resume {job_id}` goes on")


def _render_jobs(listed: list[BaseModel]) -> None:
    if not listed:
        out.print("no comparison job")
        return
    table = Table("job", "state", "case", "A", "B", "done", "runs", "requested by", "created")
    for j in listed:
        assert isinstance(j, jobs.JobInfo)
        table.add_row(
            j.id,
            j.state + (f": {escape(j.error)}" if j.error else ""),
            escape(j.case),
            escape(j.gallery_a),
            escape(j.gallery_b),
            f"{j.done:,}/{j.total:,}",
            str(j.runs),
            escape(j.requested_by),
            f"{j.created_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)


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
