"""dlib's face chips (aligned 150x150 crops) made with OpenCV and numpy, without dlib.

A chip is the image warped by the similarity transform that best maps a mean face shape (in chip
coordinates, with ``padding`` around it) onto the face's landmarks: least squares over the points
(Umeyama's method), as dlib's ``get_face_chip_details`` defines it. The template points are dlib's
published mean face shape (68-point model: landmarks 27-54 and 60-64; 5-point model: its 5 points).
When the face is much larger than the chip, the image is first halved (area averaging) until the
sampling step is at most 2 pixels, so that bilinear sampling does not alias.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

# dlib's mean face shape for landmarks 17..67 of the 68-point model, in [0, 1] chip units.
_MEAN_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)  # fmt: skip
_MEAN_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)  # fmt: skip
# The 68-point landmarks dlib aligns on: 27..54 and 60..64 (not the jaw, brows or outer mouth corners).
USED_68 = np.array([i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67)], np.int64)
TEMPLATE_68 = np.stack([np.array(_MEAN_X), np.array(_MEAN_Y)], axis=1)[USED_68 - 17]
TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)


def similarity_transform(src: F64, dst: F64) -> F64:
    """The 2x3 similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` best
    in least squares (Umeyama 1991)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def chip_transform(landmarks: F64, size: int = 150, padding: float = 0.25) -> F64:
    """2x3 transform from chip pixels to image pixels for one face's 68 or 5 landmarks."""
    if len(landmarks) == 68:
        template, points = TEMPLATE_68, landmarks[USED_68]
    elif len(landmarks) == 5:
        template, points = TEMPLATE_5, landmarks
    else:
        raise ValueError(f"face chips need 68 or 5 landmarks, got {len(landmarks)}")
    chip_points = (padding + template) / (2 * padding + 1) * size
    fit = similarity_transform(chip_points, np.asarray(points, np.float64))
    # dlib turns the fit into a rotated rectangle of size * scale around the image of the chip's centre
    # (a rectangle whose corner pixels are size * scale - 1 apart, its pixels being inclusive), and maps
    # the chip's corner pixels (0 and size - 1) onto its corners.
    centre = fit[:, :2] @ np.array([size / 2, size / 2]) + fit[:, 2]
    scale = float(np.hypot(fit[0, 0], fit[1, 0]))
    linear = fit[:, :2] * ((size * scale - 1) / (size - 1) / scale)
    m = np.zeros((2, 3))
    m[:, :2] = linear
    m[:, 2] = centre - linear @ np.array([(size - 1) / 2, (size - 1) / 2])
    return m


def extract_chip(
    rgb: npt.NDArray[np.uint8], landmarks: F64, size: int = 150, padding: float = 0.25
) -> npt.NDArray[np.uint8]:
    """The (size, size, 3) uint8 chip of one face."""
    import cv2

    m = chip_transform(np.asarray(landmarks, np.float64), size, padding)
    scale = float(np.hypot(m[0, 0], m[1, 0]))  # image pixels per chip pixel
    image = rgb
    factor = 1.0
    while scale / factor > 2.0 and min(image.shape[:2]) > 2 * size:
        image = np.asarray(
            cv2.resize(
                image, ((image.shape[1] + 1) // 2, (image.shape[0] + 1) // 2), interpolation=cv2.INTER_AREA
            ),
            np.uint8,
        )
        factor *= 2.0
    if factor != 1.0:
        m = m / factor
        m[:, 2] += 0.5 / factor - 0.5  # pixel centres of the halved image
    chip = cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )
    return np.asarray(chip, np.uint8)
