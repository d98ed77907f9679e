import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vigil.core.errors import ImageError
from vigil.vision.image import decode_image, load_image


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied() -> None:
    # a 40x20 image stored sideways with orientation 6 (rotate 90° clockwise to view)
    stored = Image.new("RGB", (20, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = decode_image(_jpeg(stored, exif=exif.tobytes()))
    assert loaded.size_wh == (40, 20)
    assert loaded.bgr[10, 10, 2] > 200  # red is the last channel in BGR


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (_jpeg(Image.new("RGB", (64, 64)))[:200], "damaged or truncated"),
    ],
)
def test_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_decompression_bomb_is_refused() -> None:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")  # tiny file, 144 Mpx
    assert len(buf.getvalue()) < 1_000_000
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(buf.getvalue(), max_pixels=50_000_000)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg(Image.new("RGB", (64, 64))))
    with pytest.raises(ImageError, match="byte limit"):
        load_image(path, max_bytes=100)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_png_with_alpha_and_greyscale_become_bgr() -> None:
    for mode in ("RGBA", "L", "P"):
        buf = io.BytesIO()
        Image.new(mode, (8, 6)).save(buf, format="PNG")
        loaded = decode_image(buf.getvalue())
        assert loaded.bgr.shape == (6, 8, 3) and loaded.bgr.dtype == np.uint8
        assert loaded.format == "PNG"
