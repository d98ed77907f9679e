"""`vigil serve --demo` prepares a camera whose video lies in a media folder (file cameras play media
folders only), once however often it starts."""

from __future__ import annotations

from pathlib import Path

from vigil.app import App
from vigil.server.demo import prepare_demo
from vigil.video import cameras


def test_the_demo_camera_plays_a_file_of_a_media_folder(app: App) -> None:
    first = prepare_demo(app)
    again = prepare_demo(app)
    assert first == again
    video = Path(first.video)
    assert video.is_file() and any(video.is_relative_to(m) for m in app.settings.media_folders)
    assert cameras.check_media_path(app.settings, first.video) == video.resolve()
    assert [c.name for c in cameras.list_cameras(app)] == [first.camera]
