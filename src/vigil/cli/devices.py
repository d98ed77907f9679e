"""`vigil devices add | list | token | revoke`: the edge devices that run cameras away from the server."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, handle_errors, out, settings
from vigil.fleet import devices as svc
from vigil.storage.audit import cli_actor

devices_cli = typer.Typer(
    help="Register edge devices (a pole, a site's box), list them, revoke them.", no_args_is_help=True
)

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server", help="the server's address as the device reaches it (shown in the command to run)"
    ),
]


def _server_url(server: str | None) -> str:
    if server:
        return server.rstrip("/")
    s = settings()
    host = "SERVER" if s.host in ("0.0.0.0", "::") else s.host  # noqa: S104 - only compared
    return f"http://{host}:{s.port}"


def _print_token(info: svc.DeviceInfo, token: str, server: str | None) -> None:
    hours = int(svc.PAIRING_TTL.total_seconds() // 3600)
    site = f" at site {info.site!r}" if info.site else ""
    templates = "" if info.keeps_templates else " (it keeps no templates: the server matches)"
    out.print(f"device {escape(info.name)!r}{escape(site)}{templates}")
    out.print(f"its pairing token, shown once and valid for {hours} h:")
    out.print(f"\n  {token}\n")
    out.print("On the device, run:")
    out.print(f"\n  vigil worker --server {escape(_server_url(server))} --token {token}\n")


@devices_cli.command("add")
@handle_errors
def add(
    name: str,
    site: Annotated[str, typer.Option(help="the site it belongs to; it gets the watchlists allowed there")],
    no_templates: Annotated[
        bool,
        typer.Option(
            "--no-templates",
            help="store no biometric template on the device: it sends embeddings, the server matches",
        ),
    ] = False,
    server: ServerOpt = None,
    as_json: bool = JsonOpt,
) -> None:
    """Register a device and print its one-time pairing token."""
    info, token = svc.add_device(app(), name, site=site, actor=cli_actor(), keeps_templates=not no_templates)
    result = {"device": info.model_dump(mode="json"), "token": token}
    emit(result, as_json, lambda: _print_token(info, token, server))


@devices_cli.command("token")
@handle_errors
def token(name: str, server: ServerOpt = None, as_json: bool = JsonOpt) -> None:
    """A new pairing token for a device that has not paired yet (the old token stops working)."""
    info, new = svc.reissue_token(app(), name, actor=cli_actor())
    result = {"device": info.model_dump(mode="json"), "token": new}
    emit(result, as_json, lambda: _print_token(info, new, server))


def _seen(d: svc.DeviceInfo) -> str:
    if d.last_seen_at is None:
        return "never"
    return d.last_seen_at.strftime("%Y-%m-%d %H:%M:%S UTC")


@devices_cli.command("list")
@handle_errors
def list_(as_json: bool = JsonOpt) -> None:
    """The devices: state, online or not, last heard from, version, outbox depth, cameras, alarms."""
    found = svc.list_devices(app())

    def render() -> None:
        table = Table("name", "site", "state", "online", "last seen", "version", "queue", "cameras", "alarms")
        for d in found:
            table.add_row(
                escape(d.name),
                escape(d.site or ""),
                d.state.value,
                "yes" if d.online else "no",
                _seen(d),
                escape(d.version or ""),
                "" if d.queue_depth is None else str(d.queue_depth),
                escape(", ".join(d.cameras)),
                str(d.alarms),
            )
        out.print(table)

    emit(list(found), as_json, render)


@devices_cli.command("revoke")
@handle_errors
def revoke(name: str, as_json: bool = JsonOpt) -> None:
    """Refuse a device from now on (its credential, its events); it cannot pair again."""
    info = svc.revoke_device(app(), name, actor=cli_actor())
    emit(info, as_json, lambda: out.print(f"revoked device {escape(info.name)!r}; it is refused from now on"))
