"""Tile layout for tiled detection (pure geometry)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vigil.vision.onnx.tiling import off_inner_edges, tile_grid, tile_starts


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "starts"),
    [
        (500, 640, 160, [0]),
        (640, 640, 160, [0]),
        (1080, 640, 160, [0, 440]),
        (1920, 640, 160, [0, 427, 853, 1280]),
        (1000, 640, 0, [0, 360]),
    ],
)
def test_tile_starts(length: int, tile: int, overlap: int, starts: list[int]) -> None:
    assert tile_starts(length, tile, overlap) == starts


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (3840, 2160), (700, 300), (641, 641)])
def test_tiles_cover_the_image_and_overlap_enough(width: int, height: int) -> None:
    tiles = tile_grid(width, height, 640, 160)
    covered = np.zeros((height, width), bool)
    for x1, y1, x2, y2 in tiles:
        assert x2 - x1 <= 640 and y2 - y1 <= 640
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 640 - 160 for a, b in itertools.pairwise(xs))


@pytest.mark.parametrize(("tile", "overlap"), [(0, 0), (640, 640), (640, -1)])
def test_bad_tiles_are_refused(tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="tile_px > overlap_px"):
        tile_starts(1000, tile, overlap)


def test_faces_cut_by_an_inner_edge_are_left_to_the_neighbour() -> None:
    tile = (440, 0, 1080, 640)  # inner edges: left (x=440) and bottom (y=640); top is the image's
    boxes = np.array(
        [[500, 100, 540, 140], [430, 100, 470, 140], [500, 620, 540, 660], [500, 0, 540, 30]], np.float32
    )
    assert off_inner_edges(boxes, tile, width=1080, height=1080).tolist() == [True, False, False, True]
