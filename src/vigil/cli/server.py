"""`vigil serve` and the accounts commands (`vigil users ...`, `vigil keys ...`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from vigil import accounts
from vigil.cli.common import JsonOpt, app, emit, handle_errors, out, settings
from vigil.storage.audit import cli_actor
from vigil.storage.tables import Role

users_cli = typer.Typer(help="User accounts of the server (roles: admin, supervisor, operator, auditor).")
keys_cli = typer.Typer(help="API keys for integrations, each with a role.")


def serve(
    host: Annotated[str | None, typer.Option(help="listen address (default VIGIL_HOST, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default VIGIL_PORT, 8080)")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="add a demo watchlist, person and camera (a rendered video)")
    ] = False,
    no_cameras: Annotated[bool, typer.Option("--no-cameras", help="do not start the cameras")] = False,
) -> None:
    """Run the server: API, web UI and one worker process per enabled camera. Ctrl-C stops it."""
    import uvicorn
    from fastapi import FastAPI

    from vigil.server.app import create_app

    @handle_errors
    def prepare() -> tuple[str | None, str, FastAPI]:
        a = app()
        password = accounts.ensure_admin(a)
        note = ""
        if demo:
            from vigil.server.demo import prepare_demo

            d = prepare_demo(a)
            note = (
                f"demo: camera {d.camera!r} plays {d.video}; {d.person!r} is on watchlist {d.watchlist!r}, "
                "so an alarm appears within seconds of the start (restart the camera to see it again)"
            )
        s = settings()
        return password, note, create_app(s, start_cameras=not no_cameras and s.start_cameras)

    password, note, api = prepare()
    s = settings()
    h, p = host or s.host, port or s.port
    out.print(f"[bold]vigil[/] serving on [link]http://{h}:{p}[/link] (data in {s.data_dir})", markup=True)
    if password:
        out.print(
            f"first run: log in as [bold]admin[/] with the one-time password [bold]{password}[/] "
            "(you will choose your own at the first log-in)",
            markup=True,
        )
    else:
        out.print("log in with your account; `vigil users reset-password NAME` gives a new one-time password")
    if note:
        out.print(note)
    uvicorn.run(api, host=h, port=p, log_level="info", timeout_graceful_shutdown=5)


@users_cli.command("create")
@handle_errors
def users_create(
    username: str,
    role: Annotated[Role, typer.Option(help="admin, supervisor, operator or auditor")],
    password: Annotated[
        str | None,
        typer.Option(
            envvar="VIGIL_NEW_PASSWORD",
            help="omit for a one-time password; either way the user changes it at the first log-in",
        ),
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Create a user (the password must be hard to guess; the user changes it at the first log-in)."""
    info = accounts.add_user(app(), username, role, password=password, by=cli_actor())
    otp = info.one_time_password
    emit(
        info,
        as_json,
        lambda: out.print(
            f"created {info.role.value} {info.username!r}" + (f"; one-time password: {otp}" if otp else "")
        ),
    )


@users_cli.command("list")
@handle_errors
def users_list(as_json: bool = JsonOpt) -> None:
    """List users."""
    users = accounts.list_users(app())

    def render() -> None:
        table = Table("user", "role", "active", "last log-in")
        for u in users:
            table.add_row(u.username, u.role.value, str(u.active), str(u.last_login_at or "-"))
        out.print(table)

    emit(users, as_json, render)  # type: ignore[arg-type]


@users_cli.command("reset-password")
@handle_errors
def users_reset(username: str) -> None:
    """Give a user a new one-time password (their sessions end)."""
    a = app()
    who = accounts.user_principal(a, username)
    otp = accounts.reset_password(a, who.id, by=cli_actor())
    out.print(f"one-time password for {username!r}: {otp}")


@keys_cli.command("create")
@handle_errors
def keys_create(
    name: str,
    role: Annotated[Role, typer.Option(help="the key's role")],
    gallery: Annotated[
        str | None, typer.Option(help="bind to a gallery (the CompreFace-compatible endpoints use it)")
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            help="the user the key belongs to: in a two-person review the key and that user are one "
            "person (without an owner the key counts as a person of its own)"
        ),
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Create an API key; it is printed once."""
    key = accounts.create_api_key(app(), name, role, gallery=gallery, owner=owner, created_by=cli_actor())
    emit(key, as_json, lambda: out.print(f"API key {key.name!r} ({key.role.value}): {key.key}"))


@keys_cli.command("list")
@handle_errors
def keys_list(as_json: bool = JsonOpt) -> None:
    """List API keys (not the keys themselves)."""
    keys = accounts.list_api_keys(app())

    def render() -> None:
        table = Table("id", "name", "prefix", "role", "gallery", "owner", "revoked")
        for k in keys:
            table.add_row(
                str(k.id),
                k.name,
                k.prefix + "...",
                k.role.value,
                k.gallery or "-",
                k.owner or "-",
                str(k.revoked),
            )
        out.print(table)

    emit(keys, as_json, render)  # type: ignore[arg-type]


@keys_cli.command("revoke")
@handle_errors
def keys_revoke(key_id: int) -> None:
    """Revoke an API key."""
    info = accounts.revoke_api_key(app(), key_id, actor=cli_actor())
    out.print(f"revoked API key {info.name!r}")
