"""`vigil camera ...` and `vigil watch`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, err, handle_errors, out, progress_bar
from vigil.events.schemas import Alarm, CameraOffline, CameraOnline, public
from vigil.storage.audit import cli_actor
from vigil.video import cameras as svc
from vigil.video.pipeline import PipelineEvent
from vigil.video.strangers import StrangerRule
from vigil.video.watch import watch as run_watch

camera_cli = typer.Typer(help="Register and list cameras.", no_args_is_help=True)


@camera_cli.command("add")
@handle_errors
def add(
    name: str,
    url: Annotated[str, typer.Argument(help="rtsp://, http(s):// (MJPEG), rtmp://, webcam:N or a file")],
    site: Annotated[str | None, typer.Option(help="the site the camera belongs to")] = None,
    location: Annotated[str | None, typer.Option(help="LAT,LON in decimal degrees")] = None,
    kind: Annotated[str, typer.Option(help=", ".join(svc.CAMERA_KINDS))] = "fixed",
    retention_days: Annotated[
        int | None, typer.Option(help="purge this camera's snapshots and sightings after N days")
    ] = None,
    keep_sightings: Annotated[
        bool, typer.Option("--keep-sightings", help="opt in to keeping every track (investigations)")
    ] = False,
    device: Annotated[
        str | None,
        typer.Option(help="the edge device that runs it (a file is then on the device, not here)"),
    ] = None,
    strangers: Annotated[
        str | None,
        typer.Option(help="stranger rule: alarm on faces in none of these galleries (comma-separated)"),
    ] = None,
    stranger_hours: Annotated[
        str | None, typer.Option(help="when the stranger rule applies, e.g. 'mon-fri 07:00-19:00' (local)")
    ] = None,
    stranger_min_quality: Annotated[
        float | None, typer.Option(help="faces below this quality are never strangers (0..1)")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Register a camera (run by the server, or by an edge device with --device)."""
    info = svc.add_camera(
        app(),
        name,
        url,
        site=site,
        location=location,
        kind=kind,
        retention_days=retention_days,
        keep_sightings=keep_sightings,
        device=device,
        strangers=_rule(strangers, stranger_hours, stranger_min_quality),
        actor=cli_actor(),
    )
    on = f" on device {info.device!r}" if info.device else ""
    emit(info, as_json, lambda: out.print(f"added camera {info.name!r} (id {info.id}){on} {info.url}"))


def _rule(galleries: str | None, hours: str | None, min_quality: float | None) -> StrangerRule | None:
    if galleries is None:
        if hours is not None or min_quality is not None:
            raise typer.BadParameter("--stranger-hours and --stranger-min-quality need --strangers GALLERIES")
        return None
    return StrangerRule(galleries=galleries.split(","), hours=hours, min_quality=min_quality)


@camera_cli.command("strangers")
@handle_errors
def strangers_(
    name: str,
    galleries: Annotated[
        str | None, typer.Option(help="alarm on faces in none of these galleries (comma-separated)")
    ] = None,
    hours: Annotated[
        str | None,
        typer.Option(help="when it applies, e.g. 'mon-fri 07:00-19:00' (local time; default always)"),
    ] = None,
    min_quality: Annotated[
        float | None, typer.Option(help="faces below this quality are never strangers (0..1)")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="turn the camera's stranger rule off")] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Set (or with --off remove) a camera's stranger rule, for restricted places only: every face
    there is checked against the galleries, and a stranger's crop is kept for the alarm's retention."""
    if off and galleries is not None:
        raise typer.BadParameter("give either --galleries or --off")
    if not off and galleries is None:
        raise typer.BadParameter("give --galleries GALLERIES (or --off to remove the rule)")
    rule = None if off else _rule(galleries, hours, min_quality)
    _, info = svc.update_camera(app(), name, strangers=rule, clear_strangers=off, actor=cli_actor())

    def render() -> None:
        r = info.strangers
        if r is None:
            out.print(f"camera {escape(info.name)!r}: no stranger rule")
        else:
            out.print(
                f"camera {escape(info.name)!r}: stranger alarms for faces in none of "
                f"{escape(', '.join(r.galleries))}, {escape(r.hours or 'always')}, "
                f"min quality {r.min_quality if r.min_quality is not None else 'default'}"
            )

    emit(info, as_json, render)


@camera_cli.command("list")
@handle_errors
def list_(as_json: bool = JsonOpt) -> None:
    """List the registered cameras (passwords in addresses are masked)."""
    cams = svc.list_cameras(app())

    def render() -> None:
        table = Table("name", "kind", "site", "location", "address", "enabled", "device", "strangers")
        for c in cams:
            loc = f"{c.location[0]:.5f},{c.location[1]:.5f}" if c.location else ""
            enabled = "yes" if c.enabled else "no"
            rule = (
                f"{','.join(c.strangers.galleries)} {c.strangers.hours or ''}".strip() if c.strangers else ""
            )
            table.add_row(c.name, c.kind, c.site or "", loc, c.url, enabled, c.device or "", rule)
        out.print(table)

    emit(list(cams), as_json, render)


def _human(event: PipelineEvent) -> None:
    ts = event.ts.strftime("%H:%M:%S")
    if isinstance(event, Alarm):
        who = (
            f"{escape(event.identity or '')} ({escape(event.gallery or '')})"
            if event.kind == "match"
            else f"stranger (in none of {escape(', '.join(event.galleries_checked or []))})"
        )
        out.print(
            f"[bold red]ALARM[/] {ts} {escape(event.camera)} frame {event.frame} track {event.track_id}: "
            f"{who} score {event.score:.3f} threshold {event.threshold:.3f} - to be reviewed by a person",
            markup=True,
        )
    elif isinstance(event, CameraOffline):
        out.print(f"[yellow]offline[/] {ts} {escape(event.camera)}: {escape(event.reason)}", markup=True)
    elif isinstance(event, CameraOnline):
        out.print(f"[green]online[/] {ts} {escape(event.camera)}", markup=True)


@handle_errors
def watch(
    source: Annotated[
        str | None, typer.Argument(help="video file, folder of images, stream URL or webcam:N")
    ] = None,
    gallery: Annotated[
        list[str] | None,
        typer.Option("--gallery", "-g", help="watchlist to watch (repeatable; default: all)"),
    ] = None,
    camera: Annotated[
        str | None, typer.Option(help="registered camera (its address if SOURCE is omitted)")
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help="sample a video file at this rate (default: every frame)")
    ] = None,
    annotate: Annotated[Path | None, typer.Option(help="write an annotated video here (.mp4)")] = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", help="stop after this many frames")
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", help="stop a live source after this")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait when connecting or reading a stream")] = 5.0,
    retry: Annotated[
        bool,
        typer.Option("--retry", help="keep retrying a stream that is unreachable at start (not an error)"),
    ] = False,
    detect_every: Annotated[
        int | None, typer.Option("--detect-every", min=1, help="run the detector on every Nth frame")
    ] = None,
    detect_size: Annotated[
        int | None,
        typer.Option("--detect-size", min=160, help="long side the frame is scaled to for detection (px)"),
    ] = None,
    upsample: Annotated[
        bool | None, typer.Option("--upsample/--no-upsample", help="upsample before detection (small faces)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON event per line, then a summary line")
    ] = False,
) -> None:
    """Watch a video source and raise alarms for people on the active watchlists."""

    def on_event(event: PipelineEvent) -> None:
        if as_json:
            # The public form: no crops, thumbnails or templates on stdout (they are in the catalog).
            sys.stdout.write(json.dumps(public(event), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            _human(event)

    def on_warning(message: str) -> None:
        err.print(f"[yellow]warning[/]: {escape(message)}", markup=True)

    overrides = {
        "video_detect_every": detect_every,
        "video_detect_side_px": detect_size,
        "video_detect_upsample": upsample,
    }
    context = app()
    context.settings = context.settings.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    with progress_bar("watching") as update:

        def on_progress(done: int, total: int | None) -> None:
            if total is not None:
                update(min(done, total), total)

        summary = run_watch(
            context,
            source,
            camera=camera,
            galleries=gallery or None,
            fps=fps,
            annotate=annotate,
            on_event=on_event,
            on_warning=on_warning,
            max_frames=max_frames,
            max_seconds=max_seconds,
            timeout_s=timeout,
            fail_fast=not retry,
            on_progress=on_progress,
        )
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        out.print(
            f"{summary['frames']} frames at {summary['fps']} fps, {summary['tracks']} tracks, "
            f"{summary['alarms']} alarms, {summary['dropped']} dropped"
        )
    if summary["problems"]:
        raise typer.Exit(9)
