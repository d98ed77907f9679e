"""Video test helpers: an MJPEG-over-HTTP server that can be cut, and a synthetic surveillance clip.

Imported as ``videoclips`` (not a conftest: every test folder's conftest is the module ``conftest``, so
``from conftest import`` picks whichever folder was collected first)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

BOUNDARY = "vigilframe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MjpegServer:
    """Serves ``frames`` in a loop at ``fps`` on ``http://127.0.0.1:<port>/stream.mjpg``.

    ``stop()`` cuts every connection and closes the port (a camera going offline);
    ``start()`` opens it again on the same port.
    """

    def __init__(
        self, frames: Sequence[npt.NDArray[np.uint8]], fps: float = 15.0, port: int | None = None
    ) -> None:
        self.jpegs = [bytes(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]) for f in frames]
        self.fps = fps
        self.port = port or free_port()
        self.sent = 0
        self._server: ThreadingHTTPServer | None = None
        self._alive = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while owner._alive.is_set():
                        jpg = owner.jpegs[i % len(owner.jpegs)]
                        self.wfile.write(
                            (
                                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                f"Content-Length: {len(jpg)}\r\n\r\n"
                            ).encode()
                        )
                        self.wfile.write(jpg + b"\r\n")
                        self.wfile.flush()
                        owner.sent += 1
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def start(self) -> None:
        self._alive.set()
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._alive.clear()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


# -- a synthetic surveillance clip with known ground truth ----------------------------------------

W, H, FPS = 640, 360, 25.0


def background(seed: int = 7) -> npt.NDArray[np.uint8]:
    """A still scene: a gradient wall, a floor, a few fixed shapes and sensor noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, H)[:, None, None]
    x = np.linspace(0, 1, W)[None, :, None]
    img = 60 + 80 * y + 30 * x * np.array([1.0, 0.8, 0.6])
    img = np.broadcast_to(img, (H, W, 3)).copy()
    img[260:, :] = (70, 75, 80)
    for _ in range(6):
        x1, y1 = int(rng.integers(0, W - 80)), int(rng.integers(0, 250))
        img[y1 : y1 + 60, x1 : x1 + 80] = rng.integers(40, 200, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def face_patch(path: str, size: int = 150) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """The middle of an LFW photo (the face with some hair), and a feathered elliptical mask."""
    img = cv2.imread(path)
    patch = cv2.resize(img[45:205, 45:205], (size, size), interpolation=cv2.INTER_AREA)
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (size // 2, size // 2), (int(size * 0.46), int(size * 0.5)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), size / 25)[:, :, None]
    return patch, mask


def render_walks(
    walks: Sequence[tuple[str, int, int, int, int]], n_frames: int, size: int = 150
) -> list[npt.NDArray[np.uint8]]:
    """Frames of people walking across the scene.

    ``walks``: (photo path, first frame, last frame, y, direction +1 left-to-right / -1 right-to-left).
    """
    bg = background()
    patches = {w[0]: face_patch(w[0], size) for w in walks}
    rng = np.random.default_rng(1)
    frames = []
    for f in range(n_frames):
        img = bg.astype(np.float32)
        for path, first, last, y, direction in walks:
            if not first <= f <= last:
                continue
            t = (f - first) / max(1, last - first)
            x = int((W - size) * (t if direction > 0 else 1 - t))
            patch, mask = patches[path]
            region = img[y : y + size, x : x + size]
            img[y : y + size, x : x + size] = region * (1 - mask) + patch * mask
        img += rng.normal(0, 2.0, img.shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def write_video(path: str, frames: Sequence[npt.NDArray[np.uint8]], fps: float = FPS) -> None:
    writer = cv2.VideoWriter(
        path, cv2.VideoWriter.fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0])
    )
    for f in frames:
        writer.write(f)
    writer.release()


def watchlist(app: Any, name: str, kind: str = "watchlist") -> None:
    """A gallery for the tests: a watchlist with its legal basis and an expiry 30 days ahead, or ``kind``."""
    from datetime import date, timedelta

    from vigil.gallery import galleries

    extra = {
        "legal_basis": "court order 12",
        "authorized_by": "Judge A",
        "expires_on": date.today() + timedelta(days=30),
    }
    spec = galleries.validate_spec(
        name=name, kind=kind, purpose="test", **(extra if kind == "watchlist" else {})
    )
    galleries.create_gallery(app, spec)
