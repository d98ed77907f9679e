"""What every CLI command shares: the app context, output (plain or JSON), errors and progress."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConfigError, VigilError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

_state: dict[str, Any] = {}

JsonOpt = typer.Option(False, "--json", help="print machine-readable JSON on stdout")


def set_data_dir(data_dir: Path | None) -> None:
    """Called once per invocation, before the command: start from fresh settings."""
    _state.clear()
    _state["data_dir"] = data_dir


def settings() -> Settings:
    if "settings" not in _state:
        overrides: dict[str, Any] = {}
        if _state.get("data_dir") is not None:
            overrides["data_dir"] = _state["data_dir"]
        try:
            _state["settings"] = Settings(**overrides)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid settings: {exc}", hint="check the VIGIL_* environment variables"
            ) from exc
    return _state["settings"]  # type: ignore[no-any-return]


def app() -> App:
    if "app" not in _state:
        _state["app"] = App(settings())
    return _state["app"]  # type: ignore[no-any-return]


def emit(
    result: BaseModel | list[BaseModel] | dict[str, Any], as_json: bool, render: Callable[[], None]
) -> None:
    """Print ``result`` as JSON, or call ``render`` for the human view."""
    if as_json:
        if isinstance(result, BaseModel):
            data: Any = result.model_dump(mode="json")
        elif isinstance(result, list):
            data = [r.model_dump(mode="json") for r in result]
        else:
            data = result
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    else:
        render()


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`VigilError` into a message on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except VigilError as exc:
            err.print(f"[bold red]error[/]: {escape(exc.message)}", markup=True)
            if exc.hint:
                err.print(f"[yellow]hint[/]: {escape(exc.hint)}", markup=True)
            raise typer.Exit(exc.exit_code) from None
        finally:
            if "app" in _state:
                _state.pop("app").close()

    return wrapper


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total_: int) -> None:
            bar.update(task, completed=done, total=total_)

        yield update
