"""Video sources: files, live streams, webcams and folders of images, as one stream of frames.

:func:`open_source` picks the source from what it is given:

- an existing file: a video file, decoded with OpenCV's FFmpeg backend, every frame or sampled at ``fps``;
- an existing folder: its images in name order, as a time-lapse;
- ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http://``, ``https://`` (MJPEG over HTTP included): a live stream;
- ``webcam:N`` or ``/dev/videoN``: a local camera.

A live source reads in its own thread and keeps only the newest frame: when processing falls behind,
older frames are dropped and counted. When it stops delivering (cut, timeout, end of stream) it reports
:class:`SourceStatus` ``offline`` and reconnects with exponential backoff, reporting ``online`` again
once frames flow. It never raises after it first connected; it raises
:class:`~vigil.core.errors.SourceUnavailableError` only if the very first connection fails and the
caller asked for that (``fail_fast``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import numpy as np

from vigil.core.errors import DecodeError, InputError, SourceUnavailableError, VigilError
from vigil.core.frame import Frame
from vigil.vision.image import IMAGE_SUFFIXES, load_image

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https")


@dataclass(frozen=True)
class SourceStatus:
    """A live source went offline or came back."""

    camera: str
    state: Literal["offline", "online"]
    ts: datetime
    reason: str = ""
    retry_in_s: float = 0.0
    reconnects: int = 0


class Source(Protocol):
    name: str
    live: bool

    def __iter__(self) -> Iterator[Frame | SourceStatus]: ...

    @property
    def dropped(self) -> int: ...

    @property
    def problems(self) -> list[str]:
        """Things that went wrong without stopping the source (unreadable images, a truncated file)."""
        ...

    def close(self) -> None: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def _capture(target: str | int, timeout_s: float) -> Any:
    import cv2

    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(timeout_s * 1000),
    ]
    if isinstance(target, int):
        return cv2.VideoCapture(target, cv2.CAP_ANY, params)
    return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)


@dataclass
class FileSource:
    """A video file, decoded frame by frame; ``fps`` samples it (None: every frame).

    ``realtime`` plays it at its own frame rate, as a camera would deliver it (the server's file cameras).
    ``start`` is the wall-clock time of its first frame (timezone-aware; default: when it is opened), to
    place a recording at the time it was made. ``first_frame`` skips the frames before it (a camera
    worker resuming a file where it was); they keep their index, time and position.
    """

    path: Path
    name: str
    fps: float | None = None
    realtime: bool = False
    start: datetime | None = None
    first_frame: int = 0
    live: bool = field(default=False, init=False)
    _problems: list[str] = field(default_factory=list, init=False)
    _cap: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.fps is not None and self.fps <= 0:
            raise InputError(f"--fps must be positive, got {self.fps}")
        if self.start is not None and self.start.utcoffset() is None:
            raise InputError(
                f"the start time {self.start.isoformat()} has no time zone", hint="give a UTC offset"
            )
        if self.path.stat().st_size == 0:
            raise DecodeError(f"{self.path}: the file is empty", hint="check that the copy finished")
        self._cap = _capture(str(self.path), 10.0)
        if not self._cap.isOpened():
            raise DecodeError(
                f"{self.path}: cannot open as a video (not a video, corrupt, or truncated before its index)",
                hint="check the file plays in a video player; re-download or re-export it",
            )
        self.source_fps = float(self._cap.get(5)) or 25.0  # CAP_PROP_FPS
        self.frame_count = int(self._cap.get(7))  # CAP_PROP_FRAME_COUNT, 0 or -1 when unknown
        self.size = (int(self._cap.get(3)), int(self._cap.get(4)))

    @property
    def dropped(self) -> int:
        return 0

    @property
    def problems(self) -> list[str]:
        return self._problems

    def __iter__(self) -> Iterator[Frame]:
        step = 1.0 if self.fps is None else max(1.0, self.source_fps / self.fps)
        index = 0
        next_keep = 0.0
        decoded = 0
        start = now_utc() if self.start is None else self.start.astimezone(UTC)
        start_mono = time.monotonic() - self.first_frame / self.source_fps
        while True:
            keep = index >= next_keep - 1e-9
            ok = self._cap.grab()
            if not ok:
                break
            if index < self.first_frame:
                next_keep += step if keep else 0.0
            elif keep:
                ok, bgr = self._cap.retrieve()
                if not ok or bgr is None:
                    break
                decoded += 1
                next_keep += step
                pos = index / self.source_fps
                if self.realtime:
                    ahead = start_mono + pos - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                yield Frame(
                    self.name,
                    index,
                    np.ascontiguousarray(bgr),
                    start + timedelta(seconds=pos),
                    time.monotonic(),
                    pos,
                )
            index += 1
        if decoded == 0 and index < max(1, self.first_frame):  # at a resume point that is the end: none left
            raise DecodeError(
                f"{self.path}: no frame could be decoded (corrupt video?)",
                hint="check the file plays in a video player; re-download or re-export it",
            )
        if self.frame_count > 0 and index < self.frame_count - 1:
            self._problems.append(
                f"{self.path}: decoding stopped at frame {index} of {self.frame_count} (truncated or corrupt)"
            )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


@dataclass
class ImageFolderSource:
    """The images of a folder in name order, as a time-lapse at ``fps`` frames per second."""

    folder: Path
    name: str
    fps: float = 1.0
    live: bool = field(default=False, init=False)
    _problems: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise InputError(
                f"{self.folder}: no images in this folder",
                hint=f"expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}",
            )

    @property
    def dropped(self) -> int:
        return 0

    @property
    def problems(self) -> list[str]:
        return self._problems

    def __iter__(self) -> Iterator[Frame]:
        start = now_utc()
        for index, path in enumerate(self.files):
            try:
                image = load_image(path)
            except VigilError as exc:
                self._problems.append(str(exc))
                continue
            pos = index / self.fps
            yield Frame(self.name, index, image.bgr, start + timedelta(seconds=pos), time.monotonic(), pos)

    def close(self) -> None:
        pass


@dataclass
class LiveSource:
    """A live stream or camera, read in a background thread that keeps only the newest frame.

    Args:
        target: the URL, or the webcam's device number.
        timeout_s: open and read timeout.
        backoff_s: first wait before a reconnect; doubles up to ``max_backoff_s``.
        fail_fast: raise :class:`SourceUnavailableError` if the first connection fails
            (instead of retrying for ever, as a supervised camera worker does).
        max_frames / max_seconds: stop after this many frames delivered / seconds (None: never).
    """

    target: str | int
    name: str
    timeout_s: float = 5.0
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    fail_fast: bool = True
    max_frames: int | None = None
    max_seconds: float | None = None
    live: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._statuses: deque[SourceStatus] = deque()
        self._dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_error: str | None = None
        self._connected = threading.Event()
        self._problems: list[str] = []

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def problems(self) -> list[str]:
        return self._problems

    def _shown(self) -> str:
        if isinstance(self.target, int):
            return f"webcam {self.target}"
        parts = urlsplit(self.target)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"  # never print credentials

    def _run(self) -> None:
        index = 0
        reconnects = 0
        backoff = self.backoff_s
        online = False
        opened_at = time.monotonic()
        while not self._stop.is_set():
            cap = _capture(self.target, self.timeout_s)
            reason = "cannot connect"
            if cap.isOpened():
                while not self._stop.is_set():
                    ok, bgr = cap.read()
                    if not ok or bgr is None:
                        reason = "stream ended or timed out"
                        break
                    if not online:
                        online = True
                        backoff = self.backoff_s
                        self._connected.set()
                        if reconnects:
                            self._push_status(
                                SourceStatus(self.name, "online", now_utc(), reconnects=reconnects)
                            )
                    now = time.monotonic()
                    frame = Frame(self.name, index, bgr, now_utc(), now, now - opened_at)
                    index += 1
                    with self._cond:
                        if self._latest is not None:
                            self._dropped += 1
                        self._latest = frame
                        self._cond.notify_all()
            cap.release()
            if self._stop.is_set():
                break
            if not self._connected.is_set() and self.fail_fast:
                self._first_error = reason
                with self._cond:
                    self._cond.notify_all()
                return
            if online or reconnects == 0:
                self._push_status(
                    SourceStatus(self.name, "offline", now_utc(), reason=reason, retry_in_s=backoff)
                )
            online = False
            reconnects += 1
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _push_status(self, status: SourceStatus) -> None:
        log.info("%s: %s %s", self.name, status.state, status.reason)
        with self._cond:
            self._statuses.append(status)
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame | SourceStatus]:
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._thread.start()
        delivered = 0
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and delivered >= self.max_frames:
                    break
                if self.max_seconds is not None and time.monotonic() - started >= self.max_seconds:
                    break
                with self._cond:
                    self._cond.wait_for(
                        lambda: (
                            self._latest is not None
                            or bool(self._statuses)
                            or self._first_error is not None
                            or self._stop.is_set()
                        ),
                        timeout=0.2,
                    )
                    if self._first_error is not None:
                        raise SourceUnavailableError(
                            f"{self._shown()}: {self._first_error} (after {self.timeout_s:g} s)",
                            hint="check the address, the credentials and that the camera is reachable",
                        )
                    statuses = list(self._statuses)
                    self._statuses.clear()
                    frame, self._latest = self._latest, None
                yield from statuses
                if frame is not None:
                    delivered += 1
                    yield frame
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.timeout_s + 2)


def open_source(
    spec: str,
    *,
    name: str | None = None,
    fps: float | None = None,
    timeout_s: float = 5.0,
    fail_fast: bool = True,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    realtime: bool = False,
    start: datetime | None = None,
    first_frame: int = 0,
) -> Source:
    """The source ``spec`` names (a file, a folder, a stream URL or ``webcam:N``); see the module doc.

    ``realtime`` paces a video file at its own frame rate (live sources are paced by the camera);
    ``start`` dates a video file's first frame and ``first_frame`` starts it there (a recording, a
    resumed file camera: see :class:`FileSource`)."""
    if (start is not None or first_frame) and not Path(spec).is_file():
        raise InputError(
            f"{spec}: a start time or frame applies only to a video file",
            hint="live sources are dated as they arrive",
        )
    scheme = urlsplit(spec).scheme.lower() if "://" in spec else ""
    if spec.startswith("webcam:") or spec.startswith("/dev/video"):
        digits = spec.removeprefix("webcam:").removeprefix("/dev/video")
        if not digits.isdigit():
            raise InputError(f"{spec}: not a webcam", hint="use webcam:0, webcam:1, ... or /dev/video0")
        return LiveSource(
            int(digits),
            name or spec,
            timeout_s=timeout_s,
            fail_fast=fail_fast,
            max_frames=max_frames,
            max_seconds=max_seconds,
        )
    if scheme:
        if scheme not in LIVE_SCHEMES:
            raise InputError(
                f"{spec}: unsupported scheme {scheme!r}",
                hint="use a file, a folder, webcam:N, or one of "
                + ", ".join(s + "://" for s in LIVE_SCHEMES),
            )
        parts = urlsplit(spec)
        if not parts.hostname:
            raise InputError(
                f"{spec}: the address has no host", hint="for example rtsp://192.168.1.20:554/stream"
            )
        return LiveSource(
            spec,
            name or parts.hostname,
            timeout_s=timeout_s,
            fail_fast=fail_fast,
            max_frames=max_frames,
            max_seconds=max_seconds,
        )
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, name or path.name, fps=fps or 1.0)
    if path.is_file():
        return FileSource(
            path, name or path.stem, fps=fps, realtime=realtime, start=start, first_frame=first_frame
        )
    raise InputError(
        f"{spec}: no such file or folder",
        hint="give a video file, a folder of images, webcam:N or a stream URL (rtsp://, http://, ...)",
    )
