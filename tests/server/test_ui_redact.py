"""The "Redact a video" page in a real browser (Chromium driven by Playwright) against a real `vigil
serve`: a supervisor gives the path of a short clip in a media folder, starts the job, sees it finish
and downloads a redacted MP4 whose SHA-256 is the one shown; a path outside the media folders is
refused in the form, naming the field."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from harness import Server, start_server, stop_server
from test_redact_api import _trim
from test_ui import browser, go, login, page, screenshot  # noqa: F401 (fixtures)

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("redact-ui") / "data"
    (data / "media").mkdir(parents=True)
    _trim(shared_data / "video" / "short_hamilton_clip.mp4", data / "media" / "clip.mp4", 20)
    s = start_server(data, {"VIGIL_START_CAMERAS": "false"})
    yield s
    stop_server(s)


def test_a_supervisor_redacts_a_video_and_downloads_it(server: Server, page: Any, tmp_path: Path) -> None:  # noqa: F811
    login(page, server, "supervisor")
    go(page, "Redact a video")
    form = page.get_by_role("form", name="New redaction")
    form.get_by_label("Video file on the server").fill("/etc/hostname")
    form.get_by_role("button", name="Start redaction").click()
    expect(form.get_by_role("alert")).to_contain_text("not inside a media folder")
    form.get_by_label("Video file on the server").fill(str(server.data_dir / "media" / "clip.mp4"))
    form.get_by_label("Detect on every N-th frame").fill("2")
    form.get_by_role("button", name="Start redaction").click()
    job = page.get_by_role("region", name="Redaction job")
    link = job.get_by_role("link", name="Download the redacted video")
    expect(link).to_be_visible(timeout=120_000)
    expect(job).to_contain_text("20 frames")
    screenshot(page, "redaction-done")
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "clip-redacted.mp4"
    expect(job).to_contain_text(hashlib.sha256(saved.read_bytes()).hexdigest())
    cap = cv2.VideoCapture(str(saved))
    ok, _ = cap.read()
    cap.release()
    assert ok
