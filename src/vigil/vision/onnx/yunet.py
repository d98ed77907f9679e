"""YuNet face detectors on onnxruntime, with ArcFace-order 5-point landmarks.

Two kinds of model file work, told apart by their input shape:

- **fixed** (OpenCV Zoo's ``face_detection_yunet_2023mar.onnx``, YuNet-s, input [1, 3, 640, 640]):
  the whole image is letterboxed (scaled to fit, padded black) into the square input;
- **dynamic** (``yunet_n_dynamic.onnx`` of ``ShiqiYu/libfacedetection.train``, YuNet-n, input
  [batch, 3, height, width] with height and width multiples of 32): the image runs at its working
  scale (:meth:`YuNetDetector.working_scale`), padded bottom/right to multiples of 32.

Either takes BGR 0-255 NCHW float32, unnormalised, and returns, for each stride 8, 16 and 32, four
tensors over the stride's grid of ``rows = height // s`` by ``cols = width // s`` cells (row-major,
one anchor per cell):

- ``cls_<s>`` (batch, cells, 1) and ``obj_<s>`` (batch, cells, 1): class and objectness
  probabilities; the face score is ``sqrt(cls * obj)`` in [0, 1];
- ``bbox_<s>`` (batch, cells, 4): ``dx, dy, dw, dh`` with centre ``((col + dx) * s, (row + dy) * s)``
  and size ``(exp(dw) * s, exp(dh) * s)``;
- ``kps_<s>`` (batch, cells, 10): five points ``((col + kx) * s, (row + ky) * s)`` in the order
  image-left eye, image-right eye, nose tip, image-left and image-right mouth corner (vigil's
  ``arcface5`` scheme).

This is the decoding of ``cv2.FaceDetectorYN`` (which the tests use as an oracle).

Scales. YuNet finds faces from about 16 px (:data:`SMALLEST_FACE_PX`) to about
:data:`LARGEST_FACE_PX` at the scale it runs at. A dynamic model's image is scaled down so its long
side is at most ``max_side_px`` (None: native resolution, the small-face setting), and up
(``UPSAMPLE``, 2x) when its long side is under ``upsample_below_px``; when that working image's
short side exceeds :data:`LARGEST_FACE_PX`, a coarse whole-image pass (short side
:data:`COARSE_SHORT_SIDE_PX`) adds the faces too large for it. With ``tile_px`` the working image
is scanned in overlapping tiles (:mod:`vigil.vision.onnx.tiling`) instead of in one piece, plus the
coarse pass; a fixed model scans tiles of its own input size at the working scale, beside its
letterboxed whole image. Faces of every pass are merged by non-maximum suppression. For the dynamic
model one piece finds the same faces as tiles and is as fast or faster (1080p: the same within the
noise of a shared 2-core machine, 4K: 1.2-3x faster); tiles bound the memory (4K: a peak of about
280 MiB against 750 MiB). The fixed model needs tiles for small faces in large frames.

Score. ``min_confidence`` is a threshold on YuNet's own score, ``sqrt(cls * obj)``; dlib's
confidence is another quantity (a logistic of the HOG/MMOD margin: 0.5 at HOG's lowest report,
0.8 at margin +0.19). Measured (``bench/detect.py``) the same numbers work for both: at 0.8 YuNet-n
misses 0.07 % of 1,500 lfw-dev subjects (dlib HOG 1.07 %), and its other detections (20 per 100
photos) are nearly all real faces in the background: by eye on 400 photos, 2 of 86 were not faces;
at 0.5 it misses no more, and 13 of the further 54 were not faces (hands, blur, a statue, a
camera): about 4 per 100 photos, weak detections fit to extend video tracks. So
``detect_min_confidence`` (0.8), ``video_min_confidence`` (0.5) and ``video_track_confidence``
(0.8) apply to YuNet's score as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ConfigError, ImageError, ModelError
from vigil.core.types import FaceDetections
from vigil.vision.onnx import create_session, run_session
from vigil.vision.onnx.tiling import off_inner_edges, tile_grid

if TYPE_CHECKING:
    from vigil.core.config import Settings

STRIDES = (8, 16, 32)
_HEADS = ("cls", "obj", "bbox", "kps")
_HEAD_WIDTH = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
PAD_MULTIPLE = max(STRIDES)
"""A dynamic model's input height and width are multiples of this."""

DEFAULT_MIN_CONFIDENCE = 0.8
"""Default score threshold (measured on lfw-dev: about 0.5 non-faces per 100 photos, under 0.3 % missed)."""

DEFAULT_MAX_SIDE_PX = 1600
"""Default long side of the working image (``Settings.detect_max_side_px``'s default)."""

DEFAULT_UPSAMPLE_BELOW_PX = 160
"""Default: images under this long side are upsampled (``yunet_from_settings`` of the default settings)."""

UPSAMPLE = 2.0
"""Factor by which images under ``upsample_below_px`` are scaled up."""

LARGEST_FACE_PX = 400
"""About the largest face YuNet finds at the scale it runs at (larger ones break up or are missed)."""

COARSE_SHORT_SIDE_PX = 320
"""Short side of the coarse whole-image pass that finds the faces too large for the working scale."""

COARSE_MIN_FACE = 0.5
"""The coarse pass adds faces from this share of the largest the fine pass is sure to find whole
(:data:`LARGEST_FACE_PX`, or the tiles' overlap) up; the fine pass finds the smaller ones better."""

CONTAINED = 0.8
"""A face whose box lies this much inside a better one's is dropped: the pieces a face too large for
the fine pass breaks into, inside the coarse pass's box of it."""

MAX_CANDIDATES = 5000
"""Candidates kept for non-maximum suppression at most, best first (as ``cv2.FaceDetectorYN``'s top_k)."""

TILE_OVERLAP = 0.25
"""Tiles overlap by this share of ``tile_px``: faces up to that size lie whole inside some tile."""

Candidates = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]
"""``xyxy`` (n, 4), ``score`` (n,), ``landmarks`` (n, 5, 2), float32: faces before merging."""


def _resize(bgr: npt.NDArray[np.uint8], factor: float) -> npt.NDArray[np.uint8]:
    """``bgr`` scaled by ``factor`` (each side rounded, at least 1 px)."""
    import cv2

    h, w = bgr.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size == (w, h):
        return bgr
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(bgr, size, interpolation=interpolation), np.uint8)


def letterbox(bgr: npt.NDArray[np.uint8], size: int) -> tuple[npt.NDArray[np.uint8], tuple[float, float]]:
    """``bgr`` scaled to fit a ``size`` x ``size`` square (aspect kept), padded with black.

    The image sits in the top-left corner, so a point ``(x, y)`` of the square maps back to
    ``(x / scale_x, y / scale_y)`` in ``bgr``.

    Returns:
        the (size, size, 3) uint8 square and ``(scale_x, scale_y)``, resized over original size.
    """
    import cv2

    h, w = bgr.shape[:2]
    scale = size / max(h, w)
    new_w = min(size, max(1, round(w * scale)))
    new_h = min(size, max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = bgr
    if (new_w, new_h) != (w, h):
        resized = np.asarray(cv2.resize(bgr, (new_w, new_h), interpolation=interpolation), np.uint8)
    square = np.zeros((size, size, 3), np.uint8)
    square[:new_h, :new_w] = resized
    return square, (new_w / w, new_h / h)


def pad_to(bgr: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """``bgr`` in the top-left corner of a black ``height`` x ``width`` image (no copy if it fits)."""
    h, w = bgr.shape[:2]
    if (h, w) == (height, width):
        return bgr
    out = np.zeros((height, width, 3), np.uint8)
    out[:h, :w] = bgr
    return out


def padded_size(length: int, multiple: int = PAD_MULTIPLE) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, -(-length // multiple) * multiple)


def nms(
    xyxy: npt.NDArray[np.float32],
    score: npt.NDArray[np.float32],
    iou_threshold: float,
    *,
    contained: float = 1.0,
) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression.

    Args:
        xyxy: (n, 4) float32 boxes.
        score: (n,) float32 scores.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.
        contained: a box is also dropped when its intersection with a kept box exceeds this share
            of the smaller of the two (1.0: never).

    Returns:
        (k,) int64 indices of the kept boxes, highest score first.
    """
    order = np.argsort(-score, kind="stable")
    x1, y1, x2, y2 = xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3]
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        union = area[i] + area[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        smaller = np.minimum(area[i], area[rest])
        ios = np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)
        order = rest[(iou <= iou_threshold) & (ios <= contained)]
    return np.asarray(keep, np.int64)


def check_outputs(outputs: dict[str, npt.NDArray[Any]], input_hw: tuple[int, int], batch: int) -> None:
    """Raise ModelError unless ``outputs`` are YuNet's twelve heads for ``batch`` inputs of ``input_hw``."""
    height, width = input_hw
    for stride in STRIDES:
        cells = (height // stride) * (width // stride)
        for head in _HEADS:
            name = f"{head}_{stride}"
            want = (batch, cells, _HEAD_WIDTH[head])
            got = np.shape(outputs[name])
            if tuple(got) != want:
                raise ModelError(
                    f"YuNet output {name} has shape {tuple(got)}, expected {want} for a "
                    f"{width}x{height} input",
                    hint="the model is not a YuNet detector with strides 8, 16 and 32",
                )


def decode(
    outputs: dict[str, npt.NDArray[np.float32]],
    input_hw: tuple[int, int],
    score_threshold: float,
    *,
    index: int = 0,
) -> Candidates:
    """Candidate faces from YuNet's raw outputs, in the coordinates of the network input.

    Args:
        outputs: the twelve ``cls_<s>``, ``obj_<s>``, ``bbox_<s>``, ``kps_<s>`` arrays,
            (batch, cells, width) float32 (checked by :func:`check_outputs`).
        input_hw: height and width of the network input in pixels (multiples of 32).
        score_threshold: candidates scoring below this are dropped.
        index: which input of the batch.

    Returns:
        ``xyxy`` (n, 4), ``score`` (n,) in [0, 1] and ``landmarks`` (n, 5, 2), all float32.
    """
    boxes, scores, points = [], [], []
    for stride in STRIDES:
        cols = input_hw[1] // stride
        cls = np.clip(outputs[f"cls_{stride}"][index].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"][index].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        idx = np.flatnonzero(score >= score_threshold)
        if idx.size == 0:
            continue
        cell_xy = np.stack([idx % cols, idx // cols], axis=1).astype(np.float32)  # (k, 2) col, row
        bbox = outputs[f"bbox_{stride}"][index].reshape(-1, 4)[idx]
        kps = outputs[f"kps_{stride}"][index].reshape(-1, 5, 2)[idx]
        centre_xy = (cell_xy + bbox[:, :2]) * stride
        size_wh = np.exp(np.minimum(bbox[:, 2:], 20.0)) * stride
        boxes.append(np.concatenate([centre_xy - size_wh / 2, centre_xy + size_wh / 2], axis=1))
        scores.append(score[idx])
        points.append((cell_xy[:, None, :] + kps) * stride)
    if not boxes:
        return _no_candidates()
    return (
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
        np.concatenate(points).astype(np.float32),
    )


def _no_candidates() -> Candidates:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)


def _concat(parts: list[Candidates]) -> Candidates:
    parts = [p for p in parts if len(p[1])]
    if not parts:
        return _no_candidates()
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _mapped(candidates: Candidates, factor: float) -> Candidates:
    """Candidates of an image scaled by ``factor``, in the original's pixels."""
    xyxy, score, landmarks = candidates
    return xyxy / factor, score, landmarks / factor


def _larger_than(candidates: Candidates, side_px: float) -> Candidates:
    """The candidates whose box is at least ``side_px`` wide or high."""
    xyxy, score, landmarks = candidates
    keep = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) >= side_px
    return xyxy[keep], score[keep], landmarks[keep]


def model_input_hw(session: Any) -> tuple[str, tuple[int, int] | None]:
    """The input's name and fixed (height, width), or None for a dynamic model.

    Raises ModelError unless ``session`` is a YuNet model: one NCHW 3-channel input and the twelve
    ``cls/obj/bbox/kps_<8|16|32>`` outputs.
    """
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"a YuNet model has one input, this one has {len(inputs)}")
    names = {o.name for o in session.get_outputs()}
    missing = sorted({f"{head}_{s}" for head in _HEADS for s in STRIDES} - names)
    if missing:
        raise ModelError(
            f"this model is not a YuNet detector: outputs {', '.join(missing)} are missing",
            hint="use face_detection_yunet_2023mar.onnx (OpenCV Zoo) or yunet_n_dynamic.onnx "
            "(libfacedetection.train)",
        )
    shape = list(inputs[0].shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ModelError(f"a YuNet model takes (batch, 3, height, width) images, this one takes {shape}")
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        if height % PAD_MULTIPLE or width % PAD_MULTIPLE or height != width:
            raise ModelError(f"a fixed-size YuNet model takes a square multiple of 32, not {width}x{height}")
        return inputs[0].name, (height, width)
    if isinstance(height, int) or isinstance(width, int):
        raise ModelError(f"this YuNet model fixes only one side of its input ({shape}); fix both or none")
    return inputs[0].name, None


@dataclass
class YuNetDetector:
    """YuNet face detection on the whole image, or tiles of it, at a working scale (see Scales above).

    >>> detector = YuNetDetector.load(Path("yunet_n_dynamic.onnx"), max_side_px=None)  # doctest: +SKIP
    >>> faces = detector.detect(load_image(path).bgr)  # doctest: +SKIP

    Attributes:
        session: the onnxruntime session of the model.
        min_confidence: faces scoring below this (YuNet's score, in [0, 1]) are dropped.
        nms_iou: IoU above which overlapping detections are merged into the best one.
        max_side_px: a larger image is scaled down so its long side is this for the fine pass;
            None: never (native resolution, the small-face setting).
        upsample_below_px: an image whose long side (after ``max_side_px``) is under this is
            scaled up ``UPSAMPLE`` times (0: never).
        tile_px: scan the working image in overlapping tiles of this side (a multiple of 32; for
            a fixed model, its input side) instead of in one piece; None: in one piece. A fixed
            model's working scale (``max_side_px``, ``upsample_below_px``) applies to tiles only.
    """

    session: Any
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    nms_iou: float = 0.3
    max_side_px: int | None = DEFAULT_MAX_SIDE_PX
    upsample_below_px: int = DEFAULT_UPSAMPLE_BELOW_PX
    tile_px: int | None = None
    name: str = "yunet"
    input_hw: tuple[int, int] | None = field(init=False)
    """The fixed model's input (height, width); None for a dynamic model."""
    _input_name: str = field(init=False, repr=False)
    _output_names: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_side_px is not None and self.max_side_px < PAD_MULTIPLE:
            raise ConfigError(f"max_side_px must be None or at least {PAD_MULTIPLE}, got {self.max_side_px}")
        if self.upsample_below_px < 0:
            raise ConfigError(
                f"upsample_below_px must be 0 (never) or positive, got {self.upsample_below_px}"
            )
        if self.tile_px is not None and (self.tile_px <= 0 or self.tile_px % PAD_MULTIPLE):
            raise ConfigError(f"tile_px must be a positive multiple of {PAD_MULTIPLE}, got {self.tile_px}")
        self._input_name, self.input_hw = model_input_hw(self.session)
        self._output_names = [o.name for o in self.session.get_outputs()]
        if self.input_hw is not None and self.tile_px not in (None, self.input_hw[0]):
            raise ConfigError(
                f"this YuNet model takes a fixed {self.input_hw[1]}x{self.input_hw[0]} input: "
                f"its tiles are {self.input_hw[0]} px, not {self.tile_px}",
                hint=f"use tile_px={self.input_hw[0]}, or the dynamic model (yunet_n_dynamic.onnx)",
            )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        threads: int = 0,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        nms_iou: float = 0.3,
        max_side_px: int | None = DEFAULT_MAX_SIDE_PX,
        upsample_below_px: int = DEFAULT_UPSAMPLE_BELOW_PX,
        tile_px: int | None = None,
    ) -> YuNetDetector:
        """The detector for the YuNet ``.onnx`` file at ``path`` (fixed or dynamic input); the
        arguments are the attributes of the class, ``threads`` onnxruntime's (0: one per core).

        Raises ModelError when the file is missing, corrupt or not a YuNet model, ConfigError when
        an option is out of range.
        """
        return cls(
            session=create_session(Path(path), threads=threads),
            min_confidence=min_confidence,
            nms_iou=nms_iou,
            max_side_px=max_side_px,
            upsample_below_px=upsample_below_px,
            tile_px=tile_px,
        )

    def with_settings(self, settings: Settings) -> YuNetDetector:
        """This detector (same session) configured by the detection settings: ``detect_max_side_px``,
        ``detect_upsample_below_px`` (through :func:`upsample_below_for_yunet`) and
        ``detect_min_confidence`` (as YuNet's score threshold, see Score above)."""
        return replace(
            self,
            min_confidence=settings.detect_min_confidence,
            max_side_px=settings.detect_max_side_px,
            upsample_below_px=upsample_below_for_yunet(settings.detect_upsample_below_px),
        )

    @property
    def dynamic(self) -> bool:
        """The model takes any input size (multiples of 32), not one fixed square."""
        return self.input_hw is None

    def working_scale(self, height: int, width: int) -> float:
        """The factor an image of ``height`` x ``width`` is scaled by for the fine pass: down to
        ``max_side_px``, then up ``UPSAMPLE`` times if its long side is under ``upsample_below_px``."""
        long_side = max(height, width)
        factor = 1.0 if self.max_side_px is None else min(1.0, self.max_side_px / long_side)
        if long_side * factor < self.upsample_below_px:
            factor *= UPSAMPLE
        return factor

    def detect(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        """Faces in ``bgr`` ((h, w, 3) uint8 BGR, any size), best score first.

        Returns ``xyxy`` clipped to the image, ``score`` in [0, 1] and ``arcface5`` landmarks, all
        in ``bgr``'s pixel coordinates. Raises ImageError for an array that is not an image,
        ModelError when the model fails or gives outputs of the wrong shape.
        """
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[0] == 0 or bgr.shape[1] == 0:
            raise ImageError(f"detect needs an (h, w, 3) BGR image, got shape {bgr.shape}")
        bgr = np.ascontiguousarray(bgr, dtype=np.uint8)
        h, w = bgr.shape[:2]
        xyxy, score, landmarks = _concat(self._passes(bgr))
        if len(score) == 0:
            return FaceDetections.empty("arcface5")
        if len(score) > MAX_CANDIDATES:
            top = np.argsort(-score, kind="stable")[:MAX_CANDIDATES]
            xyxy, score, landmarks = xyxy[top], score[top], landmarks[top]
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        keep = nms(xyxy, score, self.nms_iou, contained=CONTAINED)
        return FaceDetections(
            xyxy=xyxy[keep], score=score[keep], landmarks=landmarks[keep], landmark_scheme="arcface5"
        )

    def _passes(self, bgr: npt.NDArray[np.uint8]) -> list[Candidates]:
        """Every pass's candidates, in ``bgr``'s pixels, before merging: the fine pass (whole or
        tiled) at the working scale, and the coarse pass when faces may be beyond the fine one's range."""
        h, w = bgr.shape[:2]
        factor = self.working_scale(h, w)
        if self.input_hw is not None:  # fixed: the letterboxed whole image is the coarse pass
            whole = self._letterboxed(bgr, self.input_hw[0])
            if self.tile_px is None or max(h, w) * factor <= self.tile_px:
                return [whole]
            tiles = _mapped(self._tiles(_resize(bgr, factor), self.tile_px), factor)
            return [tiles, _larger_than(whole, COARSE_MIN_FACE * TILE_OVERLAP * self.tile_px / factor)]
        working = _resize(bgr, factor)
        short_side, long_side = sorted(working.shape[:2])
        if self.tile_px is not None and long_side > self.tile_px:
            fine = self._tiles(working, self.tile_px)
            sure_px = TILE_OVERLAP * self.tile_px  # tiles leave the faces they cut to the coarse pass
        elif short_side > LARGEST_FACE_PX:
            fine, sure_px = self._whole(working), LARGEST_FACE_PX
        else:  # every face the image can hold is within the fine pass's range
            return [_mapped(self._whole(working), factor)]
        coarse = factor * COARSE_SHORT_SIDE_PX / short_side
        coarse_faces = _mapped(self._whole(_resize(bgr, coarse)), coarse)
        # Only the faces the fine pass may have missed: on smaller ones it is the more precise.
        return [_mapped(fine, factor), _larger_than(coarse_faces, COARSE_MIN_FACE * sure_px / factor)]

    def _infer(self, batch: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[np.float32]]:
        """The twelve heads for a (n, H, W, 3) uint8 batch, checked."""
        blob = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        raw = run_session(self.session, {self._input_name: blob}, "the YuNet detector")
        outputs = dict(zip(self._output_names, raw, strict=True))
        check_outputs(outputs, batch.shape[1:3], len(batch))
        return outputs

    def _whole(self, image: npt.NDArray[np.uint8]) -> Candidates:
        """Candidates of a dynamic model run on ``image`` padded to multiples of 32."""
        h, w = image.shape[:2]
        input_hw = (padded_size(h), padded_size(w))
        outputs = self._infer(pad_to(image, *input_hw)[None])
        return decode(outputs, input_hw, self.min_confidence)

    def _letterboxed(self, bgr: npt.NDArray[np.uint8], size: int) -> Candidates:
        """Candidates of a fixed model run on ``bgr`` letterboxed into its ``size`` square."""
        square, (scale_x, scale_y) = letterbox(bgr, size)
        xyxy, score, landmarks = decode(self._infer(square[None]), (size, size), self.min_confidence)
        back = np.array([1 / scale_x, 1 / scale_y], np.float32)
        return xyxy * np.tile(back, 2), score, landmarks * back

    def _tiles(self, image: npt.NDArray[np.uint8], tile_px: int) -> Candidates:
        """Candidates of ``image`` scanned in overlapping ``tile_px`` tiles, each padded to the tile
        size; faces cut by a tile's inner edge are left to its neighbour (or the coarse pass)."""
        h, w = image.shape[:2]
        parts = []
        for tile in tile_grid(w, h, tile_px, round(tile_px * TILE_OVERLAP)):
            x1, y1, x2, y2 = tile
            side = (
                (tile_px, tile_px)
                if self.input_hw is not None
                else (padded_size(y2 - y1), padded_size(x2 - x1))
            )
            crop = pad_to(np.ascontiguousarray(image[y1:y2, x1:x2]), *side)
            xyxy, score, landmarks = decode(self._infer(crop[None]), side, self.min_confidence)
            xyxy, landmarks = (
                xyxy + np.array([x1, y1, x1, y1], np.float32),
                landmarks + np.array([x1, y1], np.float32),
            )
            keep = off_inner_edges(xyxy, tile, w, h)
            parts.append((xyxy[keep], score[keep], landmarks[keep]))
        return _concat(parts)


SMALLEST_FACE_PX = 16
"""About the smallest face YuNet finds at its working scale (recall >= 0.9 at score 0.5, bench/detect.py)."""

HOG_SMALLEST_FACE_PX = 80
"""The smallest face dlib's HOG detector finds without upsampling (its scanning window)."""


def upsample_below_for_yunet(upsample_below_px: int) -> int:
    """``detect_upsample_below_px`` (chosen for dlib HOG) for YuNet, which finds faces 5x smaller:
    both then upsample the images whose smallest findable face is the same share of the image
    (the default 800 becomes 160). Measured on lfw-dev: upsampling 64-250 px photos gains nothing
    and costs 2-4x; 40-50 px thumbnails (faces of 16-20 px) go from 1-16 % missed to 0.2 %."""
    return round(upsample_below_px * SMALLEST_FACE_PX / HOG_SMALLEST_FACE_PX)


def yunet_from_settings(path: Path, settings: Settings) -> YuNetDetector:
    """The YuNet detector at ``path`` (fixed or dynamic input) configured by the detection settings
    (:meth:`YuNetDetector.with_settings`) on ``settings.threads`` threads.

    The engine calls ``yunet_from_settings(path, settings)``; the video pipeline tunes the detector
    the engine gives it with the ``video_*`` settings mapped onto these (``vigil.video.detection``).
    """
    return YuNetDetector.load(path, threads=settings.threads).with_settings(settings)
