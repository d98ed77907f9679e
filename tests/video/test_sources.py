"""Video sources: files (every frame, sampled), folders, live MJPEG over HTTP, and bad input."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from videoclips import MjpegServer, free_port

from vigil.core.errors import DecodeError, InputError, SourceUnavailableError
from vigil.core.frame import Frame
from vigil.video.sources import FileSource, ImageFolderSource, LiveSource, SourceStatus, open_source


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "video" / "short_hamilton_clip.mp4"


def test_file_every_frame_and_sampled(clip: Path) -> None:
    src = open_source(str(clip))
    assert isinstance(src, FileSource) and src.size == (640, 360)
    frames = [f for f in src if isinstance(f, Frame)]
    assert len(frames) == 275
    assert [f.index for f in frames[:3]] == [0, 1, 2]
    assert frames[0].bgr.shape == (360, 640, 3) and frames[0].camera == "short_hamilton_clip"
    assert src.problems == [] and src.dropped == 0

    sampled = [f for f in open_source(str(clip), fps=10) if isinstance(f, Frame)]
    assert 90 <= len(sampled) <= 93  # 275 frames at 29.97 fps = 9.2 s
    gaps = np.diff([f.index for f in sampled])
    assert set(gaps.tolist()) <= {2, 3}
    assert sampled[-1].pos_s == pytest.approx(sampled[-1].index / 29.97, abs=1e-3)


def test_corrupt_empty_and_truncated_files(tmp_path: Path, clip: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(200_000))
    with pytest.raises(DecodeError, match="cannot open as a video"):
        open_source(str(junk))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty"):
        open_source(str(empty))
    # The hamilton clip keeps its index at the start: cut in half, it opens and decoding stops early.
    data = clip.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    try:
        src = open_source(str(half))
    except DecodeError:
        return  # the index was at the end: refused at once, also a clear error
    frames = [f for f in src if isinstance(f, Frame)]
    assert 0 < len(frames) < 275
    assert src.problems and "truncated" in src.problems[0]


def test_bad_addresses(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unsupported scheme 'ftp'"):
        open_source("ftp://example.org/cam")
    with pytest.raises(InputError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="not a webcam"):
        open_source("webcam:front")
    with pytest.raises(InputError, match="no host"):
        open_source("rtsp:///stream")


def test_unreachable_stream_is_a_clear_error_and_credentials_are_not_printed() -> None:
    port = free_port()  # nothing listens there
    src = open_source(f"http://user:secret@127.0.0.1:{port}/stream.mjpg", timeout_s=2)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError) as info:
        list(src)
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in info.value.message and "secret" not in info.value.message


def test_image_folder_is_a_time_lapse_and_skips_unreadable_files(tmp_path: Path, people: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, name in enumerate(["obama.jpg", "biden.jpg"]):
        (folder / f"{i:03d}.jpg").write_bytes((people / name).read_bytes())
    (folder / "002.jpg").write_bytes(b"not an image")
    src = open_source(str(folder), fps=2)
    assert isinstance(src, ImageFolderSource)
    frames = [f for f in src if isinstance(f, Frame)]
    assert [f.index for f in frames] == [0, 1]
    assert frames[1].pos_s == 0.5
    assert len(src.problems) == 1 and "002.jpg" in src.problems[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_source(str(tmp_path / "empty"))


def test_live_stream_keeps_the_newest_frame_reports_offline_and_reconnects() -> None:
    frames = [np.full((120, 160, 3), 10 * i, np.uint8) for i in range(20)]
    server = MjpegServer(frames, fps=30)
    server.start()
    src = LiveSource(server.url, "door", timeout_s=2, backoff_s=0.2, max_seconds=30)
    seen: list[str] = []
    got = 0
    try:
        for item in src:
            if isinstance(item, SourceStatus):
                seen.append(item.state)
                if item.state == "online":
                    assert item.reconnects >= 1
                continue
            got += 1
            if got == 10:
                server.stop()  # the camera goes away ...
                time.sleep(1.0)
                server.start()  # ... and comes back
            if seen == ["offline", "online"] and got >= 20:
                time.sleep(0.3)  # processing falls behind: frames are dropped, not queued
            if seen == ["offline", "online"] and got >= 25:
                break
    finally:
        src.close()
        server.stop()
    assert seen == ["offline", "online"]
    assert src.dropped > 0
