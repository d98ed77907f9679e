"""`vigil serve --demo` prepares a camera whose video lies in a media folder (file cameras play media
folders only), once however often it starts."""

from __future__ import annotations

from pathlib import Path

from vigil.app import App
from vigil.core.config import Settings
from vigil.server.demo import prepare_demo
from vigil.video import cameras


def test_the_demo_camera_plays_a_file_of_a_media_folder(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    """On the default settings, as `make demo` runs it (media folder: <data dir>/media)."""
    app = App(Settings(data_dir=tmp_path / "data"), engine_override=engine)
    try:
        _check(app)
    finally:
        app.close()


def _check(app: App) -> None:
    first = prepare_demo(app)
    again = prepare_demo(app)
    assert first == again
    video = Path(first.video)
    assert video.is_file() and any(video.is_relative_to(m) for m in app.settings.media_folders)
    assert cameras.check_media_path(app.settings, first.video) == video.resolve()
    assert [c.name for c in cameras.list_cameras(app)] == [first.camera]


def test_first_use_takes_the_edgeface_pack_and_the_demo_alarms(tmp_path: Path, shared_models: Path) -> None:
    """A fresh install that can get the better pack (here from a local folder, as an air-gapped site
    configures it; with network, from upstream) uses it from the first run, `make demo` included."""
    settings = Settings(data_dir=tmp_path / "data", model_source_dir=shared_models, threads=2)
    app = App(settings)
    try:
        assert app.pack == "edgeface-xs" and app.engine.model_id == "edgeface-xs-q"
        setup = prepare_demo(app)
        from vigil.video.watch import watch

        summary = watch(app, setup.video)
        assert summary["alarms"] >= 1
    finally:
        app.close()
    again = App(Settings(data_dir=tmp_path / "data"))  # recorded: the next start keeps it, no folder needed
    try:
        assert again.pack == "edgeface-xs"
    finally:
        again.close()
