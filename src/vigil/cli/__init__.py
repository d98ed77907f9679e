"""The `vigil` command line: a thin layer over the same services the API uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vigil import __version__
from vigil.cli import common
from vigil.cli.alarms import alarm_cli
from vigil.cli.attendance import attendance_cli
from vigil.cli.backup import backup_cli
from vigil.cli.compare import compare
from vigil.cli.demo import demo
from vigil.cli.devices import devices_cli
from vigil.cli.doctor import doctor
from vigil.cli.evaluation import calibrate, eval_cli
from vigil.cli.faces import enroll, enroll_dir, identify, verify
from vigil.cli.galleries import gallery_cli, people_cli
from vigil.cli.governance import audit_cli, encryption_cli, erase, purge, report_cli
from vigil.cli.investigation import clusters_cli, search_cmd
from vigil.cli.models import models_cli
from vigil.cli.redact import redact
from vigil.cli.server import keys_cli, serve, users_cli
from vigil.cli.video import camera_cli, watch
from vigil.cli.worker import worker

cli = typer.Typer(
    name="vigil",
    help="Face recognition for video surveillance, with the safeguards built in.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        common.out.print(f"vigil {__version__}")
        raise typer.Exit()


@cli.callback()
def main_options(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", envvar="VIGIL_DATA_DIR", help="where the catalog, photos and indexes live"
        ),
    ] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    common.set_data_dir(data_dir)


cli.add_typer(gallery_cli, name="gallery")
cli.add_typer(people_cli, name="people")
cli.add_typer(eval_cli, name="eval")
cli.add_typer(models_cli, name="models")
cli.add_typer(camera_cli, name="camera")
cli.add_typer(devices_cli, name="devices")
cli.add_typer(users_cli, name="users")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(encryption_cli, name="encryption")
cli.add_typer(report_cli, name="report")
cli.add_typer(attendance_cli, name="attendance")
cli.add_typer(alarm_cli, name="alarm")
cli.add_typer(backup_cli, name="backup")
cli.command("purge")(purge)
people_cli.command("erase")(erase)
cli.add_typer(keys_cli, name="keys")
cli.command("serve")(serve)
cli.command("enroll")(common.handle_errors(enroll))
cli.command("enroll-dir")(common.handle_errors(enroll_dir))
cli.command("verify")(common.handle_errors(verify))
cli.command("identify")(common.handle_errors(identify))
cli.command("compare")(compare)
cli.command("calibrate")(calibrate)
cli.command("watch")(watch)
cli.command("worker")(worker)
cli.command("search")(search_cmd)
cli.command("redact")(redact)
cli.add_typer(clusters_cli, name="clusters")
cli.command("demo")(demo)
cli.command("doctor")(doctor)


def main() -> None:
    cli()
