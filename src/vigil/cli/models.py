"""`vigil models list | install NAME [--from DIR] | use NAME | remove NAME`: the model packs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.markup import escape

from vigil.cli.common import JsonOpt, app, emit, err, handle_errors, out, progress_bar
from vigil.core.errors import ConfigError
from vigil.storage.audit import cli_actor
from vigil.vision.packs import service as svc
from vigil.vision.packs.catalog import ACCURACY_PENDING, get_pack
from vigil.vision.packs.resolve import is_installed

models_cli = typer.Typer(
    help="Model packs (detector + embedder + card): list, install, switch to, remove.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="the pack: dlib, edgeface-xs, edgeface-xxs")]


def _size(n: int | None) -> str:
    return "nothing to download" if n is None else f"{n / 1e6:.1f} MB"


@models_cli.command("list")
@handle_errors
def list_cmd(as_json: bool = JsonOpt) -> None:
    """Every pack with its licences, source, size, installed state, the active one and its accuracy."""
    packs = svc.list_packs(app())

    def render() -> None:
        for p in packs:
            mark = "*" if p.active else ("+" if p.in_use else " ")
            state = "installed" if p.installed else "not installed"
            if p.name == "custom":
                state = "configured" if p.installed else "not configured"
            out.print(f"{mark} [bold]{escape(p.name)}[/]: {escape(p.title)} ({state}, {_size(p.size_bytes)})")
            accuracy = "; ".join(f"{k}: {v}" for k, v in p.accuracy.items()) or ACCURACY_PENDING
            for label, value in (
                ("licences", ", ".join(p.licences)),
                ("source", p.source),
                ("accuracy", accuracy),
                ("caveat", p.caveat),
            ):
                if value:
                    out.print(f"    {label + ':':10}{escape(value)}")
        out.print("* the catalog's active pack (`vigil models use`); + the pack this process uses")

    emit(list[BaseModel](packs), as_json, render)


def _show_terms(name: str, to: Any) -> None:
    pack = get_pack(name)
    to.print(f"{escape(pack.name)}: {escape(pack.title)}, from {escape(pack.source)}")
    for f in pack.files:
        to.print(f"  {escape(f.name)} ({f.size_bytes:,} B, sha256 {f.sha256}): {escape(f.licence)}")
    to.print(f"  licences: {escape(', '.join(pack.licences))}")
    if pack.caveat:
        to.print(f"[yellow]caveat[/]: {escape(pack.caveat)}")


@models_cli.command("install")
@handle_errors
def install_cmd(
    name: NameArg,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="a folder holding the pack's upstream files (offline install)"),
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Install a pack: its files (pinned by SHA-256) from --from DIR, VIGIL_MODEL_SOURCE_DIR, a mirror
    (VIGIL_MODEL_MIRROR_URL) or upstream; the licences are shown first."""
    _show_terms(name, err if as_json else out)
    with progress_bar(f"installing {name} (bytes)") as update:
        status = svc.install_pack(app(), name, cli_actor(), from_dir=from_dir, progress=update)
    emit(
        status, as_json, lambda: out.print(f"{escape(name)} is installed ({escape(str(status.path or '-'))})")
    )


@models_cli.command("use")
@handle_errors
def use_cmd(name: NameArg, as_json: bool = JsonOpt) -> None:
    """Switch to a pack: every gallery is re-embedded from its stored photos (resumable: run it again to
    continue an interrupted switch); the old model keeps matching until a gallery is complete."""
    from vigil.gallery import modelstate as job
    from vigil.vision.engine import build_engine

    a = app()
    if not is_installed(a.settings, name):
        raise ConfigError(
            f"the model pack {name!r} is not installed",
            hint=f"vigil models install {name}   (offline: vigil models install {name} --from DIR)",
        )
    current = job.current_switch(a)
    if a.pack == name and (current is None or current.state != "running"):  # a.pack: first use decides
        emit(
            {"pack": name, "state": "in use"}, as_json, lambda: out.print(f"{escape(name)} is already in use")
        )
        return
    engine = build_engine(a.settings, name)
    status = job.start_switch(a, name, engine.model_id, cli_actor())  # the running one, to resume it
    with progress_bar(f"re-embedding for {name} (photos)", status.photos_total) as update:
        status = job.run_switch(
            a, status.id, engine, progress=lambda st: update(st.photos_done, st.photos_total)
        )
    emit(status, as_json, lambda: _render_switch(status))


def _render_switch(status: Any) -> None:
    out.print(
        f"switch to {escape(str(status.pack))}: {escape(str(status.state))}; "
        f"{status.photos_done:,} of {status.photos_total:,} photos re-embedded, {status.photos_failed:,} "
        "without a face for the new detector"
    )


@models_cli.command("remove")
@handle_errors
def remove_cmd(name: NameArg, as_json: bool = JsonOpt) -> None:
    """Delete an installed pack's files (not the active pack, not dlib)."""
    status = svc.remove_pack(app(), name, cli_actor())
    emit(status, as_json, lambda: out.print(f"removed {escape(name)}"))
