"""``Frame``: one decoded video frame, what a source yields and every video stage takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        camera: the camera (or source) name.
        index: 0-based index of the frame in the source (counting dropped and skipped frames).
        bgr: (h, w, 3) uint8 image.
        ts: wall-clock capture time, UTC.
        mono: ``time.monotonic()`` at capture, for latencies.
        pos_s: position in the video in seconds (files), or seconds since the source opened (live).
    """

    camera: str
    index: int
    bgr: npt.NDArray[np.uint8]
    ts: datetime
    mono: float
    pos_s: float
