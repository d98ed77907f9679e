"""ArcFace-style ONNX face embedders (MobileFaceNet, SFace, InsightFace ResNets) on onnxruntime.

Each face is aligned on its ``arcface5`` landmarks to the standard 112x112 ArcFace template with
a similarity transform, converted and normalised as its :class:`ModelCard` says, and embedded.
The card is required: it carries the model's id, dimension, preprocessing and licence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ModelError
from vigil.core.modelcard import ModelCard
from vigil.core.types import FaceDetections
from vigil.vision.onnx import create_session, run_session, sha256_file
from vigil.vision.protocols import l2_normalise

ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],  # image-left eye
        [73.5318, 51.5014],  # image-right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # image-left mouth corner
        [70.7299, 92.2041],  # image-right mouth corner
    ],
    np.float32,
)
"""(5, 2) float32: where ArcFace models expect the ``arcface5`` points in a 112x112 crop."""

_CARD_FIELDS = (
    'id, name, dimension, preprocessing {alignment: "arcface5-112", input_size_wh: [112, 112], '
    "color, mean, std}, licence, source, default_threshold (and optionally file_sha256)"
)


def similarity_transform(
    src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64] | None:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` onto ``dst``.

    Umeyama's method, as ``skimage.transform.SimilarityTransform`` estimates it; reflections
    are excluded.

    Args:
        src: (k, 2) float64 points.
        dst: (k, 2) float64 points.

    Returns:
        (2, 3) float64 matrix for ``cv2.warpAffine``, or None when ``src`` has no spread.
    """
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = float((src_c**2).sum(axis=1).mean())
    if not np.isfinite(src_var) or src_var < 1e-12:
        return None
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum()) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def align_arcface(
    bgr: npt.NDArray[np.uint8], landmarks5: npt.NDArray[np.floating[Any]], size: int = 112
) -> npt.NDArray[np.uint8]:
    """The face with ``arcface5`` points ``landmarks5`` warped onto the ArcFace template.

    Args:
        bgr: (h, w, 3) uint8 image.
        landmarks5: (5, 2) points in ``bgr``'s pixels: left eye, right eye, nose, left and right
            mouth corner (image left/right).
        size: side of the square crop in pixels; the 112-pixel template is scaled to it.

    Returns:
        (size, size, 3) uint8 crop in ``bgr``'s colour order. Degenerate landmarks (all points
        equal) give a black crop.
    """
    import cv2

    src = np.asarray(landmarks5, np.float64).reshape(5, 2)
    matrix = similarity_transform(src, ARCFACE_TEMPLATE_112.astype(np.float64) * (size / 112.0))
    if matrix is None:
        return np.zeros((size, size, 3), np.uint8)
    crop = cv2.warpAffine(
        bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.asarray(crop, np.uint8)


def find_card(model_path: Path, *, card_path: Path | None, cards_dir: Path | None) -> ModelCard:
    """The card of the model at ``model_path``.

    Looked up, in order: ``card_path``; ``<stem>.json`` or ``<file name>.json`` beside the model;
    ``<stem>.json`` in ``cards_dir``. A calibrated card that ``vigil calibrate`` wrote to
    ``cards_dir/<card id>.json`` then replaces the one found. Raises ModelError when none exists or
    the card is invalid.
    """
    card = _base_card(model_path, card_path=card_path, cards_dir=cards_dir)
    calibrated = Path(cards_dir) / f"{card.id}.json" if cards_dir is not None else None
    if calibrated is not None and calibrated.is_file():
        return ModelCard.load(calibrated)
    return card


def _base_card(model_path: Path, *, card_path: Path | None, cards_dir: Path | None) -> ModelCard:
    if card_path is not None:
        return ModelCard.load(Path(card_path))
    candidates = [model_path.with_suffix(".json"), model_path.with_name(model_path.name + ".json")]
    if cards_dir is not None:
        candidates.append(Path(cards_dir) / f"{model_path.stem}.json")
    for candidate in candidates:
        if candidate.is_file():
            return ModelCard.load(candidate)
    raise ModelError(
        f"no model card for {model_path}; looked for {', '.join(str(c) for c in candidates)}",
        hint=f"write a JSON model card at {candidates[0]} with the fields {_CARD_FIELDS}",
    )


@dataclass
class OnnxEmbedder:
    """Embeddings from an ArcFace-style ONNX model, L2-normalised.

    Attributes:
        session: the onnxruntime session of the model.
        card: the model's card (id, dimension, preprocessing, thresholds).
    """

    session: Any
    card: ModelCard
    _input_name: str = field(init=False, repr=False)
    _batch_size: int | None = field(init=False, repr=False)
    _size_wh: tuple[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pre = self.card.preprocessing
        if pre.alignment != "arcface5-112":
            raise ModelError(
                f"card {self.card.id!r} asks for {pre.alignment!r} alignment; the ONNX embedder aligns "
                "on the ArcFace 5-point template only",
                hint='set preprocessing.alignment to "arcface5-112" if the model was trained that way',
            )
        width, height = pre.input_size_wh
        if width != height or width <= 0:
            raise ModelError(
                f"card {self.card.id!r}: arcface5 alignment needs a square input, got {width}x{height}"
            )
        self._size_wh = (width, height)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"card {self.card.id!r}: the model must have one NCHW image input")
        self._input_name = inputs[0].name
        batch, channels, in_h, in_w = inputs[0].shape
        for got, want, what in ((channels, 3, "channels"), (in_h, height, "height"), (in_w, width, "width")):
            if isinstance(got, int) and got != want:
                raise ModelError(
                    f"card {self.card.id!r} says input {what} {want}, the model takes {got}",
                    hint="fix preprocessing.input_size_wh in the card",
                )
        self._batch_size = batch if isinstance(batch, int) and batch > 0 else None
        dimension = self._output_dimension()
        if dimension != self.card.dimension:
            raise ModelError(
                f"card {self.card.id!r} says dimension {self.card.dimension}, the model outputs {dimension}",
                hint="fix the card's dimension, or use the card that belongs to this model",
            )

    def _output_dimension(self) -> int:
        """Length of one embedding, from the output shape or, if symbolic, a trial run."""
        shape = self.session.get_outputs()[0].shape
        tail = shape[1:]
        if tail and all(isinstance(d, int) for d in tail):
            return int(np.prod(tail))
        width, height = self._size_wh
        probe = np.zeros((self._batch_size or 1, 3, height, width), np.float32)
        out = run_session(self.session, {self._input_name: probe}, f"embedder {self.card.id!r}")[0]
        return int(np.prod(out.shape[1:]))

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        card_path: Path | None = None,
        threads: int = 0,
        cards_dir: Path | None = None,
    ) -> OnnxEmbedder:
        """The embedder for the ``.onnx`` file at ``path`` and its card (see :func:`find_card`).

        Raises ModelError when the file is missing or corrupt, no card exists, the file's SHA-256
        differs from ``card.file_sha256``, or the model disagrees with the card.
        """
        path = Path(path)
        session = create_session(path, threads=threads)
        card = find_card(path, card_path=card_path, cards_dir=cards_dir)
        if card.file_sha256:
            actual = sha256_file(path)
            if actual.lower() != card.file_sha256.strip().lower():
                raise ModelError(
                    f"model file {path} has SHA-256 {actual}, card {card.id!r} expects {card.file_sha256}",
                    hint="the file is not the one the card describes; download it again or fix the card",
                )
        return cls(session=session, card=card)

    def preprocess(
        self, bgr: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """(n, 3, h, w) float32 network input for (n, 5, 2) ``arcface5`` ``landmarks`` in ``bgr``."""
        pre = self.card.preprocessing
        crops = np.stack([align_arcface(bgr, pts, self._size_wh[0]) for pts in landmarks])  # (n, h, w, 3)
        if pre.color == "RGB":
            crops = crops[..., ::-1]
        blob = (crops.astype(np.float32) - np.float32(pre.mean)) / np.float32(pre.std)
        return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))

    def embed(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> npt.NDArray[np.float32]:
        """(n, card.dimension) float32 unit vectors, one per face of ``faces``, in order.

        Raises ModelError when ``faces`` carry no ``arcface5`` landmarks.
        """
        if len(faces) == 0:
            return np.zeros((0, self.card.dimension), np.float32)
        if faces.landmarks is None or faces.landmark_scheme != "arcface5":
            got = "no landmarks" if faces.landmarks is None else f"{faces.landmark_scheme} landmarks"
            raise ModelError(
                f"embedder {self.card.id!r} needs arcface5 landmarks, the faces carry {got}",
                hint="use a detector that gives arcface5 landmarks (yunet) with the ONNX embedder",
            )
        blob = self.preprocess(bgr, faces.landmarks)
        chunk = self._batch_size or len(blob)
        vectors = []
        for start in range(0, len(blob), chunk):
            part = blob[start : start + chunk]
            if len(part) < chunk:  # a fixed batch larger than what is left: pad with zeros
                part = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), np.float32)])
            out = run_session(self.session, {self._input_name: part}, f"embedder {self.card.id!r}")[0]
            vectors.append(np.asarray(out, np.float32).reshape(len(part), -1))
        return l2_normalise(np.concatenate(vectors)[: len(blob)])
