"""`vigil redact`: every face in a video or a folder of images blurred (or every face but some)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vigil.cli.common import JsonOpt, app, emit, handle_errors, out, progress_bar
from vigil.storage.audit import cli_actor
from vigil.video import redact as svc


@handle_errors
def redact(
    source: Annotated[Path, typer.Argument(help="a video file or a folder of images")],
    out_path: Annotated[
        Path, typer.Option("--out", help="the redacted video (FILE.mp4), or a new folder for images")
    ],
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="an identity whose face stays visible (repeat for more)"),
    ] = None,
    gallery: Annotated[
        list[str] | None, typer.Option("--gallery", help="where --keep is looked up (default: every gallery)")
    ] = None,
    detect_every: Annotated[
        int, typer.Option("--detect-every", min=1, max=30, help="detect on every N-th frame (1: every frame)")
    ] = 1,
    margin: Annotated[
        float,
        typer.Option("--margin", min=0.0, max=2.0, help="each face box grown by this share of its size"),
    ] = 0.25,
    as_json: bool = JsonOpt,
) -> None:
    """Blur every face in SOURCE (every face but the --keep identities') and write it to --out.
    Faces are detected on every frame and followed between frames; audited with the output's SHA-256."""
    options = svc.RedactOptions(
        keep=keep or [], galleries=gallery or None, detect_every=detect_every, margin=margin
    )
    with progress_bar(f"redacting {source.name}") as update:
        result = svc.redact(app(), source, out_path, options, actor=cli_actor(), on_progress=update)
    emit(result, as_json, lambda: _render(result))


def _render(result: svc.RedactResult) -> None:
    kept = f", kept {', '.join(escape(k) for k in result.kept_identities)}" if result.kept_identities else ""
    out.print(
        f"{escape(result.out)}: {result.frames:,} frames, {result.faces_blurred:,} faces blurred "
        f"({result.tracks} tracks){kept}\nsha256 {result.output_sha256}"
    )
