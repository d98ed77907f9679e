"""Annotated video: boxes, track ids and decisions drawn on every frame, written with OpenCV."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import InputError
from vigil.core.frame import Frame
from vigil.core.types import FaceDetections

if TYPE_CHECKING:
    from vigil.video.pipeline import Pipeline

RED = (0, 0, 255)
GREEN = (0, 200, 0)
GREY = (170, 170, 170)


@dataclass
class Annotator:
    """Writes ``path`` (MP4, ``mp4v``) at ``fps``; the size is taken from the first frame."""

    path: Path
    fps: float = 25.0
    _writer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
            raise InputError(
                f"{self.path}: --annotate writes a video", hint="give a file name ending in .mp4"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self, width: int, height: int) -> None:
        import cv2

        fourcc = cv2.VideoWriter.fourcc(*("mp4v" if self.path.suffix.lower() != ".avi" else "MJPG"))
        self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
        if not self._writer.isOpened():
            raise InputError(
                f"{self.path}: cannot write this video file", hint="check the folder is writable"
            )

    def draw(self, frame: Frame, tracked: FaceDetections, pipeline: Pipeline) -> None:
        img = render(frame, tracked, pipeline)
        if self._writer is None:
            self._open(img.shape[1], img.shape[0])
        self._writer.write(img)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def render(frame: Frame, tracked: FaceDetections, pipeline: Pipeline) -> npt.NDArray[np.uint8]:
    """A copy of ``frame`` with each track's box, id and decision drawn (red: alarmed)."""
    import cv2

    img = frame.bgr.copy()
    if len(tracked) and tracked.track_id is not None:
        ids, boxes = [int(t) for t in tracked.track_id], tracked.xyxy
        measured = True
    else:
        ids, boxes = pipeline.tracker.predicted(frame.index)
        measured = False
    for tid, box in zip(ids, boxes, strict=True):
        st = pipeline.states.get(tid)
        alarmed = bool(st and st.alarmed)
        colour = RED if alarmed else (GREEN if measured else GREY)
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
        label = f"#{tid} " + (st.last_label if st and st.last_label else "unknown")
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(img, (x1, max(0, y1 - th - 6)), (x1 + tw + 4, y1), colour, -1)
        cv2.putText(img, label, (x1 + 2, y1 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    m = pipeline.metrics
    hud = f"{pipeline.camera}  frame {frame.index}  alarms {m.alarms}"
    cv2.putText(img, hud, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2)
    return img
