"""`vigil alarm`: alarms listed, shown and reviewed (a dismissal may keep the face as a negative
example, and undo it), an alarm's evidence exported for hand-over, and an export checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vigil import accounts
from vigil.cli.common import JsonOpt, app, emit, handle_errors, out
from vigil.core.errors import ForbiddenError
from vigil.gallery import negatives
from vigil.storage.audit import cli_actor
from vigil.storage.tables import AlarmState, ReviewAction, Role
from vigil.video import alarms as alarms_svc
from vigil.video import export as svc

alarm_cli = typer.Typer(
    help="Alarms: list, show, review (and undo a negative example), evidence export and its check.",
    no_args_is_help=True,
)


@alarm_cli.command("list")
@handle_errors
def list_alarms(
    state: Annotated[AlarmState | None, typer.Option(help="only alarms in this state")] = None,
    gallery: Annotated[str | None, typer.Option(help="only this watchlist's alarms")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: bool = JsonOpt,
) -> None:
    """Alarms, newest first (``--state suppressed``: those negative examples stopped)."""
    found = alarms_svc.list_alarms(app(), state=state, gallery=gallery, limit=limit)

    def render() -> None:
        for a in found:
            extra = f" (suppressed by {len(a.suppressed_by)} earlier dismissals)" if a.suppressed_by else ""
            who = escape(a.identity or "stranger")
            out.print(
                f"#{a.id} {a.captured_at:%Y-%m-%d %H:%M:%S} {escape(a.camera)} {who} "
                f"score {a.score:.3f} / {a.threshold:.3f} {a.state.value} v{a.version}{extra}"
            )

    emit(found, as_json, render)  # type: ignore[arg-type]


@alarm_cli.command("show")
@handle_errors
def show(
    alarm_id: Annotated[int, typer.Argument(help="the alarm's id")],
    as_json: bool = JsonOpt,
) -> None:
    """One alarm: its figures, reviews, the negative example kept from it, what suppressed it
    (shown to you: audited as ``alarm_view``)."""
    d = alarms_svc.view_alarm(app(), alarm_id, actor=cli_actor())
    emit(d, as_json, lambda: _render_detail(d))


def _render_detail(d: alarms_svc.AlarmDetail) -> None:
    out.print(
        f"#{d.id} {escape(d.identity or 'stranger')} in {escape(d.gallery or '-')} on {escape(d.camera)}: "
        f"score {d.score:.3f}, threshold {d.threshold:.3f} (FPIR {d.fpir:g}), {d.state.value} v{d.version}"
    )
    for r in d.reviews:
        out.print(f"  {r.at:%Y-%m-%d %H:%M} {escape(r.actor)} {r.action.value} {escape(r.reason or '')}")
    if d.negative is not None:
        n = d.negative
        status = f"undone by {escape(n.undone_by or '')}" if n.undone_at else "active"
        out.print(f"  kept as negative example {n.id} ({status}; suppressed {n.uses} faces)")
    if d.suppressions:
        out.print(f"  suppressed by {len(d.suppressions)} earlier dismissals:")
        for n in d.suppressions:
            state = "undone" if n.undone_at else "active"
            out.print(f"    negative {n.id} from alarm #{n.alarm_id} ({state})")


@alarm_cli.command("review")
@handle_errors
def review(
    alarm_id: Annotated[int, typer.Argument(help="the alarm's id")],
    action: Annotated[ReviewAction, typer.Argument(help="confirm, dismiss or close")],
    user: Annotated[str, typer.Option("--as", help="the local user reviewing (reviews count people)")],
    version: Annotated[int, typer.Option(min=0, help="the alarm version you looked at (see `show`)")],
    reason: Annotated[str | None, typer.Option(help="why (required to dismiss)")] = None,
    not_this_person: Annotated[
        bool,
        typer.Option(
            "--not-this-person",
            help="with dismiss: keep the face as a negative example, so faces nearer to it than to "
            "the person raise no alarm for that identity",
        ),
    ] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Confirm, dismiss or close an alarm as a local user (audited as that user)."""
    a = app()
    who = accounts.user_principal(a, user)
    if who.role is Role.auditor:
        raise ForbiddenError(f"{user} is an auditor: auditors read alarms, they do not review them")
    d = alarms_svc.review_alarm(
        a, alarm_id, action, who, expected_version=version, reason=reason, not_this_person=not_this_person
    )
    emit(d, as_json, lambda: _render_detail(d))


@alarm_cli.command("undo-negative")
@handle_errors
def undo_negative(
    negative_id: Annotated[int, typer.Argument(help="the negative example's id (see `show`)")],
    as_json: bool = JsonOpt,
) -> None:
    """Stop a negative example from suppressing alarms (audited as ``negative_undone``)."""
    n = negatives.undo_negative(app(), negative_id, cli_actor())
    emit(n, as_json, lambda: out.print(f"negative example {n.id} (from alarm #{n.alarm_id}) undone"))


@alarm_cli.command("export")
@handle_errors
def export(
    alarm_id: Annotated[int, typer.Argument(help="the alarm's id")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="a new folder for the crop, the frame and the manifest")
    ],
    as_json: bool = JsonOpt,
) -> None:
    """Write the alarm's crop, its frame with every other face blurred and a manifest of hashes
    (recorded in the audit log)."""
    result = svc.export_alarm(app(), alarm_id, out_dir, actor=cli_actor())
    emit(
        result,
        as_json,
        lambda: out.print(
            f"alarm {result.alarm_id} exported to {escape(result.out_dir)} "
            f"({result.faces_blurred} other faces blurred)\nmanifest sha256 {result.manifest_sha256}"
        ),
    )


@alarm_cli.command("verify-export")
@handle_errors
def verify_export(
    folder: Annotated[Path, typer.Argument(help="a folder `vigil alarm export` wrote")],
    as_json: bool = JsonOpt,
) -> None:
    """Check an export's files against its manifest and find its entry in this data dir's audit log
    (exit code 1 if anything differs)."""
    result = svc.verify_export(folder, app())
    emit(result, as_json, lambda: _render(result))
    if not result.ok:
        raise typer.Exit(1)


def _render(result: svc.VerifyExportResult) -> None:
    if result.ok:
        out.print(f"export of alarm {result.alarm_id} intact; audit entry {result.audit_entry_id}")
    for p in result.problems:
        out.print(f"[red]{escape(p)}[/red]")
