"""`vigil gallery ...` and `vigil people ...`."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, handle_errors, out
from vigil.core.errors import InputError
from vigil.gallery import galleries as svc
from vigil.gallery import hygiene, identities
from vigil.gallery.hygiene_report import render_html
from vigil.storage.audit import cli_actor
from vigil.storage.tables import GalleryKind

gallery_cli = typer.Typer(help="Create, list, show and delete galleries.", no_args_is_help=True)
people_cli = typer.Typer(help="List and remove enrolled people.", no_args_is_help=True)


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"--expires {value!r} is not a date", hint="use YYYY-MM-DD") from exc


@gallery_cli.command("create")
@handle_errors
def create(
    name: str,
    kind: Annotated[
        GalleryKind, typer.Option("--kind", help="watchlist, attendance, investigation or reference")
    ],
    purpose: Annotated[str | None, typer.Option(help="why this gallery exists")] = None,
    legal_basis: Annotated[
        str | None, typer.Option("--legal-basis", help="the law or decision allowing it")
    ] = None,
    authorized_by: Annotated[str | None, typer.Option("--authorized-by", help="who authorised it")] = None,
    expires: Annotated[
        str | None, typer.Option(help="expiry date, YYYY-MM-DD (required for watchlists)")
    ] = None,
    confirmations: Annotated[
        int, typer.Option(help="people who must each confirm an alarm (2: two-person rule)")
    ] = 1,
    start: Annotated[str | None, typer.Option(help="attendance: expected arrival, HH:MM local time")] = None,
    end: Annotated[str | None, typer.Option(help="attendance: expected leaving, HH:MM local time")] = None,
    days: Annotated[str | None, typer.Option(help="attendance: working days, e.g. mon-fri")] = None,
    grace: Annotated[
        int | None, typer.Option(help="attendance: minutes after --start before an arrival is late")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Create a gallery. Watchlists need --purpose, --legal-basis, --authorized-by and --expires;
    attendance galleries take a schedule (--start, --end, --days, --grace)."""
    spec = svc.validate_spec(
        name=name,
        kind=kind,
        purpose=purpose,
        legal_basis=legal_basis,
        authorized_by=authorized_by,
        expires_on=_parse_date(expires),
        confirmations_required=confirmations,
        **_schedule(start, end, days, grace),
    )
    info = svc.create_gallery(app(), spec, actor=cli_actor())
    emit(info, as_json, lambda: out.print(f"created {info.kind.value} gallery {info.name!r} (id {info.id})"))


def _schedule(start: str | None, end: str | None, days: str | None, grace: int | None) -> dict[str, object]:
    """The attendance schedule options that were given, as gallery fields."""
    given = {
        "attendance_start": start,
        "attendance_end": end,
        "attendance_days": days,
        "attendance_grace_min": grace,
    }
    return {k: v for k, v in given.items() if v is not None}


@gallery_cli.command("update")
@handle_errors
def update(
    name: str,
    purpose: Annotated[str | None, typer.Option()] = None,
    legal_basis: Annotated[str | None, typer.Option("--legal-basis")] = None,
    authorized_by: Annotated[str | None, typer.Option("--authorized-by")] = None,
    expires: Annotated[
        str | None, typer.Option(help="new expiry date, YYYY-MM-DD (renews a watchlist)")
    ] = None,
    confirmations: Annotated[int | None, typer.Option(help="people who must confirm an alarm")] = None,
    sites: Annotated[
        str | None, typer.Option(help="alarm only at these sites (comma-separated; '' = all)")
    ] = None,
    cameras: Annotated[
        str | None, typer.Option(help="alarm only on these cameras (comma-separated; '' = all)")
    ] = None,
    retention_days: Annotated[
        int | None, typer.Option(help="purge this gallery's alarms after N days")
    ] = None,
    start: Annotated[str | None, typer.Option(help="attendance: expected arrival, HH:MM local time")] = None,
    end: Annotated[str | None, typer.Option(help="attendance: expected leaving, HH:MM local time")] = None,
    days: Annotated[str | None, typer.Option(help="attendance: working days, e.g. mon-fri")] = None,
    grace: Annotated[int | None, typer.Option(help="attendance: minutes of grace before late")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Change a gallery's terms or schedule; the change is audited with the terms before and after."""
    changes: dict[str, object] = _schedule(start, end, days, grace)
    for key, value in (
        ("purpose", purpose),
        ("legal_basis", legal_basis),
        ("authorized_by", authorized_by),
        ("confirmations_required", confirmations),
        ("retention_days", retention_days),
    ):
        if value is not None:
            changes[key] = value
    if expires is not None:
        changes["expires_on"] = _parse_date(expires)
    for key, csv in (("sites", sites), ("cameras", cameras)):
        if csv is not None:
            changes[key] = [p for p in csv.split(",") if p.strip()] or None
    if not changes:
        raise InputError("nothing to change", hint="see `vigil gallery update --help`")
    _, after = svc.update_gallery(app(), name, changes, actor=cli_actor())
    emit(after, as_json, lambda: out.print(f"updated gallery {name!r}: {', '.join(sorted(changes))}"))


@gallery_cli.command("list")
@handle_errors
def list_(as_json: bool = JsonOpt) -> None:
    """List galleries with their counts."""
    infos = svc.list_galleries(app())

    def render() -> None:
        table = Table("name", "kind", "identities", "templates", "expires", "purpose")
        for g in infos:
            expiry = f"{g.expires_on}{' (EXPIRED)' if g.expired else ''}" if g.expires_on else "-"
            table.add_row(g.name, g.kind.value, str(g.identities), str(g.templates), expiry, g.purpose or "-")
        out.print(table)

    emit(list(infos), as_json, render)


@gallery_cli.command("show")
@handle_errors
def show(name: str, as_json: bool = JsonOpt) -> None:
    """Show one gallery."""
    info = svc.show_gallery(app(), name)

    def render() -> None:
        for key, value in info.model_dump().items():
            out.print(f"{key:>14}: {value.value if hasattr(value, 'value') else value}")

    emit(info, as_json, render)


@gallery_cli.command("delete")
@handle_errors
def delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Delete a gallery with its people, templates and photos."""
    if not yes and not typer.confirm(f"Delete gallery {name!r} and everyone enrolled in it?"):
        raise typer.Exit(1)
    info = svc.delete_gallery(app(), name, actor=cli_actor())
    emit(info, as_json, lambda: out.print(f"deleted gallery {info.name!r} ({info.identities} identities)"))


@people_cli.command("list")
@handle_errors
def people_list(
    gallery: Annotated[str | None, typer.Option("--gallery", "-g", help="only this gallery")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """List enrolled people."""
    people = identities.list_identities(app(), gallery)

    def render() -> None:
        table = Table("id", "gallery", "name", "external id", "photos", "templates")
        for p in people:
            table.add_row(str(p.id), p.gallery, p.name, p.external_id or "-", str(p.photos), str(p.templates))
        out.print(table)

    emit(list(people), as_json, render)


@people_cli.command("remove")
@handle_errors
def people_remove(
    who: Annotated[str, typer.Argument(help="name or id of the person")],
    gallery: Annotated[str, typer.Option("--gallery", "-g", help="the person's gallery")],
    as_json: bool = JsonOpt,
) -> None:
    """Remove a person with their templates, photos and index entries."""
    info = identities.remove_identity(app(), gallery, who, actor=cli_actor())
    emit(
        info,
        as_json,
        lambda: out.print(f"removed {info.name!r} from {info.gallery!r} ({info.templates} templates)"),
    )


@gallery_cli.command("check")
@handle_errors
def check(
    name: str,
    ids: Annotated[list[int] | None, typer.Argument(help="with --fix: the ids the fix takes")] = None,
    fix: Annotated[
        str | None,
        typer.Option(
            "--fix",
            help="apply one finding's fix: remove-photo PHOTO_ID, merge KEEP_ID OTHER_ID, remove-identity ID",
        ),
    ] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="write a report with the photos side by side to FILE")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Check a gallery: likely wrong photos, people enrolled twice (here or in another gallery), photos
    below the quality the matcher needs, people with a single photo. Changes nothing unless --fix."""
    if fix is not None:
        result = hygiene.apply_fix(app(), name, fix, ids or [], actor=cli_actor())
        emit(result, as_json, lambda: out.print(result.done, markup=False))
        return
    if ids:
        raise InputError(
            "ids are given only with --fix", hint="vigil gallery check NAME --fix remove-photo ID"
        )
    report = hygiene.check_gallery(app(), name, actor=cli_actor())
    if html_file is not None:
        html_file.write_text(render_html(app(), report), encoding="utf-8")

    def render() -> None:
        table = Table("kind", "people", "photos (id sha256)", "score", "fix")
        for f in report.findings:
            photos = "\n".join(f"{p.photo_id} {p.sha256[:12]}" for p in f.photos[:4])
            score = "-" if f.score is None else f"{f.score:.3f}"
            table.add_row(
                f.kind, ", ".join(f.identities), photos, score, "\n".join(x.command for x in f.fixes)
            )
        out.print(
            f"{report.gallery}: {report.identities} people, {report.photos} photos; compared with "
            f"{', '.join(report.compared_with) or 'no other gallery'}; {len(report.findings)} finding(s)",
            markup=False,
        )
        if report.findings:
            out.print(table)
        if html_file is not None:
            out.print(f"report written to {html_file}", markup=False)

    emit(report, as_json, render)
