"""`vigil search` (retrospective search of the sightings) and `vigil clusters ...` (unknown faces)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, err, handle_errors, out, progress_bar
from vigil.cli.governance import parse_time
from vigil.core.errors import InputError
from vigil.investigation import clusters, search
from vigil.storage import audit
from vigil.storage.tables import ClusterState
from vigil.vision.image import load_image

clusters_cli = typer.Typer(
    help="Recurring unknown faces among the sightings: update, review, promote, dismiss.",
    no_args_is_help=True,
)


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "-"


@handle_errors
def search_cmd(
    photo: Annotated[Path | None, typer.Argument(help="a photo of the person (or use --identity)")] = None,
    since: Annotated[str | None, typer.Option(help="start of the window (UTC), YYYY-MM-DD[THH:MM]")] = None,
    until: Annotated[
        str | None, typer.Option(help="end of the window (UTC), exclusive; default: now")
    ] = None,
    camera: Annotated[
        list[str] | None, typer.Option("--camera", "-c", help="camera to search (repeatable; default: all)")
    ] = None,
    case: Annotated[str, typer.Option(help="the case or incident reference (required; audited)")] = "",
    identity: Annotated[
        int | None, typer.Option("--identity", help="search with this identity's templates instead")
    ] = None,
    largest: Annotated[bool, typer.Option("--largest", help="use the largest face of a group photo")] = False,
    limit: Annotated[int, typer.Option(help="at most this many hits")] = 100,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="write a timeline of the hits (PNG) to this file")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Search the sightings of cameras that keep them for a person, in a time window: hits above the
    open-set threshold, best first. Every search needs --case and is audited."""
    case = search.check_case(case)
    start = parse_time(since, "--since")
    if start is None:
        raise InputError("a retrospective search needs a window", hint="give --since (and --until)")
    end = parse_time(until, "--until") or datetime.now(UTC)
    if (photo is None) == (identity is None):
        raise InputError("give a PHOTO or --identity ID (one of the two)")
    a = app()
    image = None
    if photo is not None:
        image = load_image(
            photo,
            max_pixels=a.settings.max_image_pixels,
            max_bytes=a.settings.max_upload_bytes,
            max_memory_bytes=a.settings.max_image_memory_bytes,
        )
    request = search.SearchRequest(
        case=case, since=start, until=end, cameras=tuple(camera or ()), limit=limit
    )
    with progress_bar("comparing sightings") as update:
        result = search.search(
            a,
            search.Probe(image=image, identity_id=identity, largest=largest),
            request,
            audit.cli_actor(),
            on_progress=update,
        )
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_bytes(search.timeline_png(result))

    def render() -> None:
        out.print(
            f"case {escape(result.case)}: {len(result.hits)} hits in {result.searched} sightings "
            f"(threshold {result.threshold:.4f} for FPIR {result.fpir:g}, model {result.model})"
        )
        if result.hits:
            table = Table("sighting", "camera", "first seen (UTC)", "last seen (UTC)", "score", "crop sha256")
            for h in result.hits:
                table.add_row(
                    str(h.sighting_id),
                    escape(h.camera),
                    _when(h.first_seen),
                    _when(h.last_seen),
                    f"{h.score:.4f}",
                    h.crop_sha256 or "-",
                )
            out.print(table)
        if result.truncated:
            out.print(f"more hits than --limit {limit}; raise it to see them")
        if plot is not None:
            out.print(f"timeline: {plot}")

    emit(result, as_json, render)


@clusters_cli.command("update")
@handle_errors
def update(
    min_size: Annotated[int, typer.Option(help="sightings a new cluster needs (a recurring face)")] = 2,
    as_json: bool = JsonOpt,
) -> None:
    """Cluster the sightings that matched no one: join open clusters, form new ones."""
    with progress_bar("clustering sightings") as progress:
        r = clusters.update(app(), audit.cli_actor(), min_size=min_size, on_progress=progress)
    emit(
        r,
        as_json,
        lambda: out.print(
            f"{r.considered} unclustered sightings: {r.assigned} joined open clusters, {r.clustered} formed "
            f"{r.new_clusters} new clusters, {r.left_unclustered} left (threshold {r.threshold:.4f} at FMR "
            f"{r.fmr:g}; {r.seconds} s)"
        ),
    )


@clusters_cli.command("list")
@handle_errors
def list_cmd(
    state: Annotated[str, typer.Option(help="open, promoted, dismissed or all")] = "open",
    as_json: bool = JsonOpt,
) -> None:
    """Clusters, largest first."""
    if state not in ("open", "promoted", "dismissed", "all"):
        raise InputError(f"--state {state!r}", hint="open, promoted, dismissed or all")
    rows = clusters.list_clusters(app(), None if state == "all" else ClusterState(state))

    def render() -> None:
        table = Table("id", "state", "size", "first seen (UTC)", "last seen (UTC)", "cameras")
        for c in rows:
            table.add_row(
                str(c.id),
                c.state.value,
                str(c.size),
                _when(c.first_seen),
                _when(c.last_seen),
                ", ".join(c.cameras),
            )
        out.print(table)

    emit(list(rows), as_json, render)


@clusters_cli.command("show")
@handle_errors
def show(cluster_id: int, as_json: bool = JsonOpt) -> None:
    """A cluster and its member sightings (crop digests: `GET /api/media/{sha256}`)."""
    c = clusters.get_cluster(app(), cluster_id)

    def render() -> None:
        out.print(
            f"cluster {c.id} ({c.state.value}): {c.size} sightings on {', '.join(c.cameras)}, "
            f"{_when(c.first_seen)} to {_when(c.last_seen)}"
        )
        table = Table("sighting", "camera", "first seen (UTC)", "frames", "quality", "crop sha256")
        for m in c.members:
            table.add_row(
                str(m.id),
                escape(m.camera),
                _when(m.first_seen),
                str(m.frames),
                str(m.quality),
                m.crop_sha256 or "-",
            )
        out.print(table)

    emit(c, as_json, render)


@clusters_cli.command("promote")
@handle_errors
def promote(
    cluster_id: int,
    gallery: Annotated[str, typer.Option("--gallery", "-g", help="the gallery to enrol into")],
    name: Annotated[str, typer.Option("--name", help="the person's name")],
    consent_on: Annotated[
        str | None, typer.Option("--consent-on", help="attendance galleries: the day the person consented")
    ] = None,
    consent_by: Annotated[
        str | None, typer.Option("--consent-by", help="attendance galleries: who recorded the consent")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Enrol every member crop (with a detectable face) as a new identity of a gallery."""
    when = None
    if consent_on is not None:
        try:
            when = date.fromisoformat(consent_on)
        except ValueError:
            raise InputError(f"--consent-on {consent_on!r} is not a date", hint="use YYYY-MM-DD") from None
    r = clusters.promote(
        app(), cluster_id, gallery, name, audit.cli_actor(), consent_on=when, consent_by=consent_by
    )

    def render() -> None:
        out.print(
            f"cluster {r.cluster_id} enrolled as {escape(r.identity)} (id {r.identity_id}) in "
            f"{escape(r.gallery)}: {r.enrolled} crops"
        )
        if r.skipped:
            err.print(f"skipped (no face found): sightings {', '.join(map(str, r.skipped))}")

    emit(r, as_json, render)


@clusters_cli.command("dismiss")
@handle_errors
def dismiss(
    cluster_id: int,
    reason: Annotated[str | None, typer.Option(help="why (audited)")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Mark a cluster as not of interest; later updates leave it alone."""
    c = clusters.dismiss(app(), cluster_id, audit.cli_actor(), reason)
    emit(c, as_json, lambda: out.print(f"cluster {c.id} dismissed"))
