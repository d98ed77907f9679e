"""Reading still images safely: EXIF orientation applied, decompression bombs refused.

Images inside vigil are BGR uint8 arrays of shape (h, w, 3), as OpenCV and video decoders give them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ImageError

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 30_000_000


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
) -> LoadedImage:
    """Decode image bytes into a :class:`LoadedImage`.

    Raises:
        ImageError: empty, oversized or non-image data, a decompression bomb, or a broken file.
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
                im.load()
                upright = ImageOps.exif_transpose(im)
                rgb = np.asarray(upright.convert("RGB"), dtype=np.uint8)
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
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return LoadedImage(bgr=bgr, sha256=hashlib.sha256(data).hexdigest(), data=data, format=fmt, name=name)


def load_image(
    path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
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
    return decode_image(data, name=str(path), max_pixels=max_pixels, max_bytes=max_bytes)
