"""Reading still images safely: EXIF orientation applied, decompression bombs refused.

Images inside vigil are BGR uint8 arrays of shape (h, w, 3), as OpenCV and video decoders give them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ImageError

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 30_000_000
DEFAULT_MAX_MEMORY_BYTES = 256 * 2**20


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
"""File name endings treated as images when a folder is scanned."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded still image.

    Attributes:
        bgr: (h, w, 3) uint8, EXIF orientation applied.
        sha256: hex digest of the original file bytes.
        data: the original file bytes (kept for content-addressed storage).
        format: the file format PIL recognised (``JPEG``, ``PNG``, ...).
    """

    bgr: npt.NDArray[np.uint8]
    sha256: str
    data: bytes
    format: str
    name: str

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.bgr.shape[1]), int(self.bgr.shape[0])


def decode_image(
    data: bytes,
    *,
    name: str = "<bytes>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
) -> LoadedImage:
    """Decode image bytes into a :class:`LoadedImage`.

    Raises:
        ImageError: empty, oversized or non-image data, a decompression bomb (too many pixels, or
            more than ``max_memory_bytes`` to decode them), or a broken file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError(f"{name}: the file is empty", hint="give a JPEG or PNG photo")
    if len(data) > max_bytes:
        raise ImageError(
            f"{name}: {len(data):,} bytes is over the {max_bytes:,}-byte limit",
            hint="resize the photo or raise VIGIL_MAX_UPLOAD_BYTES",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or "unknown"
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"{name}: {w}x{h} pixels is over the {max_pixels:,}-pixel limit "
                        "(possible decompression bomb)",
                        hint="resize the photo or raise VIGIL_MAX_IMAGE_PIXELS",
                    )
                need = decode_bytes(im.mode, w, h)
                if need > max_memory_bytes:
                    raise ImageError(
                        f"{name}: decoding {w}x{h} pixels ({im.mode}) takes about {need / 2**20:,.0f} MiB, "
                        f"over the {max_memory_bytes / 2**20:,.0f} MiB limit (possible decompression bomb)",
                        hint="resize the photo or raise VIGIL_MAX_IMAGE_MEMORY_BYTES",
                    )
                bgr = _decode_bgr(im, ImageOps)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{name}: refused as a possible decompression bomb ({exc})",
            hint="resize the photo or raise VIGIL_MAX_IMAGE_PIXELS",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{name}: not an image file vigil can read", hint="give a JPEG or PNG photo"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(
            f"{name}: the image is damaged or truncated ({exc})", hint="re-export the photo"
        ) from exc
    return LoadedImage(bgr=bgr, sha256=hashlib.sha256(data).hexdigest(), data=data, format=fmt, name=name)


_ONE_BYTE_MODES = frozenset({"1", "L", "P"})


def decode_bytes(mode: str, width: int, height: int) -> int:
    """Peak bytes to decode a ``width`` x ``height`` image of PIL ``mode`` into a BGR array: PIL keeps
    1 byte a pixel for bilevel, grey and palette images and 4 for the others (16-bit and float
    modes too); any mode but RGB is converted to an RGB copy (4); the array takes 3."""
    pil = 1 if mode in _ONE_BYTE_MODES else 4
    converted = 0 if mode == "RGB" else 4
    return width * height * (pil + converted + 3)


def _decode_bgr(im: Any, image_ops: Any) -> npt.NDArray[np.uint8]:
    """The opened PIL image as a (h, w, 3) uint8 BGR array, upright.

    The orientation is applied in place and a converted copy is closed as soon as the array exists:
    the peak is :func:`decode_bytes` (PIL's pixels, a converted copy, the array)."""
    import cv2

    im.load()
    image_ops.exif_transpose(im, in_place=True)
    rgb_image = im if im.mode == "RGB" else im.convert("RGB")
    try:
        bgr = np.array(rgb_image, dtype=np.uint8)
    finally:
        if rgb_image is not im:
            rgb_image.close()
    cv2.cvtColor(bgr, cv2.COLOR_RGB2BGR, dst=bgr)
    return bgr


def load_image(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
) -> LoadedImage:
    """Read and decode an image file (see :func:`decode_image`)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(
                f"{path}: {size:,} bytes is over the {max_bytes:,}-byte limit",
                hint="resize the photo or raise VIGIL_MAX_UPLOAD_BYTES",
            )
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file", hint="check the path") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{path}: is a folder, not an image", hint="give an image file") from exc
    except PermissionError as exc:
        raise ImageError(f"{path}: permission denied", hint="check the file's permissions") from exc
    return decode_image(
        data, name=str(path), max_pixels=max_pixels, max_bytes=max_bytes, max_memory_bytes=max_memory_bytes
    )


def png_image(rgb: npt.NDArray[np.uint8], name: str) -> LoadedImage:
    """An (h, w, 3) uint8 RGB array encoded as PNG, then decoded as any uploaded photo (the demos' photos)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return decode_image(buf.getvalue(), name=name)
