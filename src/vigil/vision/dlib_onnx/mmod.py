"""dlib's MMOD-CNN face detector on onnxruntime: the same detections as dlib's, about 30x faster.

dlib runs the network once over a *tiled image pyramid*: the image, normalised to ``(pixel - mean) /
256``, and its reductions by 5/6 (bilinear, corner-aligned, computed on the normalised values) packed
into one tensor whose background is 0, with 10 pixels between tiles and 11 around them. Every output
cell scoring above 0 is a detection: the cell (c, r) looks at the point (8c + 14, 8r + 14) of the tiled
tensor (three 5x5 convolutions of stride 2), the detection window (80x80) is centred there, moved into
the tile nearest to it, and scaled up to the image (each pyramid level maps back by ``p * 6/5 + 0.3``).
Detections are then kept greedily by score unless they overlap a kept one (dlib's test: intersection
over the area of the two boxes' bounding box above the model's threshold). This module reproduces
each of those steps so that the boxes match dlib's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.vision.dlib import model_path
from vigil.vision.dlib_onnx.convert import MmodOptions, converted_mmod
from vigil.vision.dlib_onnx.runtime import open_session

F32 = npt.NDArray[np.float32]
PADDING = 10
OUTER_PADDING = 11
MEAN_RGB = (122.78199768066406, 117.0009994506836, 104.2979965209961)
Rect = tuple[int, int, int, int]
"""left, top, height, width of a tile in the tiled pyramid."""


def pyramid_layout(height: int, width: int) -> tuple[int, int, list[Rect]]:
    """(rows, cols, tiles) of dlib's tiled 5/6 pyramid for an image of this size."""
    sizes = [(height, width)]
    h, w = height, width
    while True:
        h, w = (5 * h) // 6, (5 * w) // 6
        if h * w == 0 or h < 5:
            break
        sizes.append((h, w))
    total = sum(s[0] + PADDING for s in sizes) - 2 * PADDING
    column, previous_width = 0, 0
    for sh, sw in sizes:
        if sw <= sizes[0][1] - previous_width - PADDING and (column - sizes[0][0]) * 2 >= total - sizes[0][0]:
            break
        column += sh + PADDING
        previous_width = sw
    column -= PADDING
    full_width = sizes[0][1]
    tiles: list[Rect] = []
    y = OUTER_PADDING
    i = 0
    while y < column + OUTER_PADDING and i < len(sizes):  # the left column, top down
        tiles.append((OUTER_PADDING, y, sizes[i][0], sizes[i][1]))
        y += sizes[i][0] + PADDING
        i += 1
    y -= PADDING
    first = tiles[0]
    while i < len(sizes):  # the rest up the right edge, bottom up
        sh, sw = sizes[i]
        right, bottom = OUTER_PADDING + full_width - 1, y - 1
        left, top = right - (sw - 1), bottom - (sh - 1)
        if not (
            right < first[0]
            or left > first[0] + first[3] - 1
            or bottom < first[1]
            or top > first[1] + first[2] - 1
        ):
            break
        tiles.append((left, top, sh, sw))
        y -= sh + PADDING
        i += 1
    return column + 2 * OUTER_PADDING, full_width + 2 * OUTER_PADDING, tiles


def resize_bilinear(planes: F32, rows: int, cols: int) -> F32:
    """(c, rows, cols): ``planes`` (c, h, w) resized with corner-aligned bilinear interpolation."""
    _, h, w = planes.shape
    xs = np.arange(cols) * ((w - 1) / max(cols - 1, 1))
    ys = np.arange(rows) * ((h - 1) / max(rows - 1, 1))
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx = (xs - x0).astype(np.float32)[None, None, :]
    fy = (ys - y0).astype(np.float32)[None, :, None]
    top_rows, bottom_rows = planes[:, y0], planes[:, y1]
    top = top_rows[:, :, x0] * (1 - fx) + top_rows[:, :, x1] * fx
    bottom = bottom_rows[:, :, x0] * (1 - fx) + bottom_rows[:, :, x1] * fx
    out: F32 = (top * (1 - fy) + bottom * fy).astype(np.float32)
    return out


def tiled_pyramid(rgb: npt.NDArray[np.uint8]) -> tuple[F32, list[Rect]]:
    """(1, 3, H, W) float32 tiled pyramid tensor of ``rgb`` and its tiles."""
    rows, cols, tiles = pyramid_layout(*rgb.shape[:2])
    tensor = np.zeros((3, rows, cols), np.float32)
    level = ((rgb.astype(np.float32) - np.array(MEAN_RGB, np.float32)) / 256.0).transpose(2, 0, 1)
    for k, (left, top, h, w) in enumerate(tiles):
        if k:
            level = resize_bilinear(level, h, w)
        tensor[:, top : top + h, left : left + w] = level
    return tensor[None], tiles


def _to_image(
    tiles: list[Rect], tl: npt.NDArray[np.float64], br: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    centre = (tl + br) / 2

    def distance(tile: Rect) -> float:
        left, top, h, w = tile
        dx = max(left - centre[0], 0.0, centre[0] - (left + w - 1))
        dy = max(top - centre[1], 0.0, centre[1] - (top + h - 1))
        return float(dx * dx + dy * dy)

    k = int(np.argmin([distance(t) for t in tiles]))
    origin = np.array(tiles[k][:2], np.float64)
    tl, br = tl - origin, br - origin
    for _ in range(k):
        tl, br = tl * 6 / 5 + 0.3, br * 6 / 5 + 0.3
    return np.concatenate([tl, br])


def _overlaps(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], options: MmodOptions) -> bool:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return False
    inner = float(iw * ih)
    outer = float((max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1))
    area_a = float((a[2] - a[0] + 1) * (a[3] - a[1] + 1))
    area_b = float((b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return (
        inner / outer > options.nms_iou
        or inner / area_a > options.nms_covered
        or inner / area_b > options.nms_covered
    )


@dataclass
class OnnxMmod:
    """Runs the converted detector on an RGB image: ``[(left, top, right, bottom, score), ...]``."""

    cache_dir: Path
    threads: int = 0
    _session: Any = field(default=None, init=False, repr=False)
    options: MmodOptions = field(init=False)

    def __post_init__(self) -> None:
        graph, self.options = converted_mmod(model_path("mmod_human_face_detector.dat"), self.cache_dir)
        self._session = open_session(graph, self.threads)

    def __call__(
        self, rgb: npt.NDArray[np.uint8], upsample: int = 0
    ) -> list[tuple[int, int, int, int, float]]:
        import cv2

        image = rgb
        for _ in range(upsample):
            size = (image.shape[1] * 2, image.shape[0] * 2)
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), np.uint8)
        tensor, tiles = tiled_pyramid(np.ascontiguousarray(image))
        scores = self._session.run(None, {"tensor": tensor})[0][0, 0]
        ww, wh = self.options.window
        found = []
        for r, c in zip(*np.nonzero(scores > 0), strict=True):
            p = np.array([8.0 * c + 14.0, 8.0 * r + 14.0])
            half = np.array([(ww - 1) / 2, (wh - 1) / 2])
            box = _to_image(tiles, p - half, p + half)
            for _ in range(upsample):  # back through cv2's 2x upsampling (pixel centres at 2x + 0.5)
                box = (box - 0.5) / 2
            found.append((float(scores[r, c]), box))
        found.sort(key=lambda d: -d[0])
        kept: list[tuple[float, npt.NDArray[np.int64]]] = []
        for score, box in found:
            rect = np.floor(box + 0.5).astype(np.int64)
            if not any(_overlaps(rect, k, self.options) for _, k in kept):
                kept.append((score, rect))
        return [(int(b[0]), int(b[1]), int(b[2]), int(b[3]), s) for s, b in kept]
