"""Overlapping square tiles over an image, for detectors that look for small faces at native resolution.

A tiled scan cuts the image into ``tile_px`` squares that overlap by ``overlap_px``, runs the detector
on each, and keeps, of every tile's faces, only those that do not touch one of its inner edges (an
edge shared with a neighbour): a face no wider than the overlap lies whole inside some tile, and a
face cut by an inner edge is the neighbour's (or, if larger than the overlap, a coarser whole-image
pass's). What remains is merged across tiles by non-maximum suppression.

>>> tile_grid(1920, 1080, 640, 160)[:3]
[(0, 0, 640, 640), (427, 0, 1067, 640), (853, 0, 1493, 640)]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Tile = tuple[int, int, int, int]
"""A tile in whole pixels of the scanned image: ``x1, y1, x2, y2`` (``x2``, ``y2`` excluded)."""

EDGE_MARGIN_PX = 2.0
"""A face box this close to a tile's inner edge counts as cut by it."""


def tile_starts(length: int, tile_px: int, overlap_px: int) -> list[int]:
    """Start offsets of tiles of ``tile_px`` covering ``length`` pixels, overlapping by at least
    ``overlap_px``; the last tile ends at ``length`` (one tile at 0 when ``length <= tile_px``).

    >>> tile_starts(1080, 640, 160)
    [0, 440]
    >>> tile_starts(500, 640, 160)
    [0]
    """
    if tile_px <= 0 or not 0 <= overlap_px < tile_px:
        raise ValueError(f"need tile_px > overlap_px >= 0, got tile_px={tile_px}, overlap_px={overlap_px}")
    if length <= tile_px:
        return [0]
    step = tile_px - overlap_px
    count = -(-(length - tile_px) // step) + 1  # ceil division: tiles needed at the largest step
    return [round(i * (length - tile_px) / (count - 1)) for i in range(count)]


def tile_grid(width: int, height: int, tile_px: int, overlap_px: int) -> list[Tile]:
    """Tiles covering a ``width`` x ``height`` image, row by row; edge tiles are clipped to the image
    when it is smaller than a tile in that direction."""
    return [
        (x, y, min(x + tile_px, width), min(y + tile_px, height))
        for y in tile_starts(height, tile_px, overlap_px)
        for x in tile_starts(width, tile_px, overlap_px)
    ]


def off_inner_edges(
    xyxy: npt.NDArray[np.float32], tile: Tile, width: int, height: int, margin_px: float = EDGE_MARGIN_PX
) -> npt.NDArray[np.bool_]:
    """Which boxes ((n, 4) xyxy, in image coordinates) keep clear of ``tile``'s inner edges.

    An edge on the image border is not inner: faces cut by the image itself are kept.
    """
    x1, y1, x2, y2 = tile
    keep = np.ones(len(xyxy), bool)
    if x1 > 0:
        keep &= xyxy[:, 0] > x1 + margin_px
    if y1 > 0:
        keep &= xyxy[:, 1] > y1 + margin_px
    if x2 < width:
        keep &= xyxy[:, 2] < x2 - margin_px
    if y2 < height:
        keep &= xyxy[:, 3] < y2 - margin_px
    return keep
