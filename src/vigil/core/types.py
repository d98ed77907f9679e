"""``FaceDetections``: the one value passed between vision and video stages.

Parallel numpy arrays, shape-checked on creation, indexable by boolean masks or integer arrays.
Stages never mutate a ``FaceDetections``; they return a new one (``with_``).

>>> import numpy as np
>>> d = FaceDetections(xyxy=np.array([[0, 0, 10, 10], [5, 5, 50, 60]], np.float32),
...                    score=np.array([0.2, 0.9], np.float32))
>>> len(d[d.score > 0.5])
1
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

LandmarkScheme = Literal["arcface5", "dlib5"]
"""How the 5 landmark points are defined.

- ``arcface5``: left eye centre, right eye centre, nose tip, left and right mouth corners
  (image left/right), as YuNet, SCRFD and RetinaFace produce them.
- ``dlib5``: dlib's 5-point predictor: outer and inner corner of the eye on the image's right,
  outer and inner corner of the eye on the image's left, bottom of the nose.
"""

F32 = npt.NDArray[np.float32]


def _as(a: Any, dtype: type, shape_tail: tuple[int, ...], name: str) -> npt.NDArray[Any]:
    arr: npt.NDArray[Any] = np.asarray(a, dtype=dtype)
    if arr.ndim != 1 + len(shape_tail) or (shape_tail and arr.shape[1:] != shape_tail):
        want = "(n, " + ", ".join(map(str, shape_tail)) + ")" if shape_tail else "(n,)"
        raise ValueError(f"FaceDetections.{name} must have shape {want}, got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class FaceDetections:
    """Faces found in one image.

    Attributes:
        xyxy: (n, 4) float32 boxes, pixel coordinates ``x1, y1, x2, y2``.
        score: (n,) float32 detector confidence (backend-specific scale).
        landmarks: (n, 5, 2) float32 points in pixels, or None; see ``landmark_scheme``.
        landmark_scheme: which 5-point definition ``landmarks`` follows.
        quality: (n,) float32 in [0, 1], or None until scored.
        embedding: (n, d) float32 L2-normalised vectors, or None until embedded.
        track_id: (n,) int64, or None until tracked.
    """

    xyxy: F32
    score: F32
    landmarks: F32 | None = None
    landmark_scheme: LandmarkScheme = "arcface5"
    quality: F32 | None = None
    embedding: F32 | None = None
    track_id: npt.NDArray[np.int64] | None = None
    _n: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        xyxy = _as(self.xyxy, np.float32, (4,), "xyxy")
        n = len(xyxy)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "_n", n)
        object.__setattr__(self, "score", self._check(self.score, np.float32, (), "score"))
        for name, dtype, tail in (
            ("landmarks", np.float32, (5, 2)),
            ("quality", np.float32, ()),
            ("track_id", np.int64, ()),
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, self._check(value, dtype, tail, name))
        if self.embedding is not None:
            emb = np.asarray(self.embedding, dtype=np.float32)
            if emb.ndim != 2 or len(emb) != n:
                raise ValueError(f"FaceDetections.embedding must have shape ({n}, d), got {emb.shape}")
            object.__setattr__(self, "embedding", emb)

    def _check(self, a: Any, dtype: type, tail: tuple[int, ...], name: str) -> npt.NDArray[Any]:
        arr = _as(a, dtype, tail, name)
        if len(arr) != self._n:
            raise ValueError(f"FaceDetections.{name} has {len(arr)} rows, xyxy has {self._n}")
        return arr

    @classmethod
    def empty(cls, landmark_scheme: LandmarkScheme = "arcface5") -> FaceDetections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            score=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
            landmark_scheme=landmark_scheme,
        )

    def __len__(self) -> int:
        return self._n

    def __getitem__(
        self, index: npt.NDArray[np.bool_] | npt.NDArray[np.integer[Any]] | slice | int
    ) -> FaceDetections:
        """Select faces by boolean mask, integer array, slice or a single int (kept 2-D)."""
        if isinstance(index, (int, np.integer)):
            index = np.array([int(index)])
        if isinstance(index, np.ndarray) and index.dtype == np.bool_ and len(index) != self._n:
            raise IndexError(f"mask of length {len(index)} for {self._n} faces")

        def sel(a: npt.NDArray[Any] | None) -> npt.NDArray[Any] | None:
            return None if a is None else a[index]

        return FaceDetections(
            xyxy=self.xyxy[index],
            score=self.score[index],
            landmarks=sel(self.landmarks),
            landmark_scheme=self.landmark_scheme,
            quality=sel(self.quality),
            embedding=sel(self.embedding),
            track_id=sel(self.track_id),
        )

    def with_(self, **changes: Any) -> FaceDetections:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    @property
    def size_wh(self) -> F32:
        """(n, 2) float32 box width and height in pixels."""
        return np.stack([self.xyxy[:, 2] - self.xyxy[:, 0], self.xyxy[:, 3] - self.xyxy[:, 1]], axis=1)

    @property
    def area(self) -> F32:
        wh = self.size_wh
        return (wh[:, 0] * wh[:, 1]).astype(np.float32)

    def eye_nose(self) -> tuple[F32, F32, F32]:
        """Centres of the image-left eye, image-right eye and the nose, each (n, 2).

        Raises ValueError when there are no landmarks.
        """
        if self.landmarks is None:
            raise ValueError("these detections carry no landmarks")
        lm = self.landmarks
        if self.landmark_scheme == "dlib5":
            right: F32 = ((lm[:, 0] + lm[:, 1]) / 2).astype(np.float32)
            left: F32 = ((lm[:, 2] + lm[:, 3]) / 2).astype(np.float32)
            return left, right, lm[:, 4]
        return lm[:, 0], lm[:, 1], lm[:, 2]

    def shifted(self, dx: float, dy: float) -> FaceDetections:
        """Boxes and landmarks moved by ``(dx, dy)`` pixels (from a crop to the image it was cut from)."""
        offset = np.array([dx, dy], np.float32)
        return self.with_(
            xyxy=self.xyxy + np.tile(offset, 2),
            landmarks=None if self.landmarks is None else self.landmarks + offset,
        )

    @classmethod
    def concat(cls, parts: list[FaceDetections]) -> FaceDetections:
        """The faces of ``parts`` one after the other (optional fields kept where every part has them)."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]

        def cat(name: str) -> npt.NDArray[Any] | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            landmarks=cat("landmarks"),
            landmark_scheme=parts[0].landmark_scheme,
            quality=cat("quality"),
            embedding=cat("embedding"),
            track_id=cat("track_id"),
        )

    def scaled(self, factor: float) -> FaceDetections:
        """Boxes and landmarks multiplied by ``factor`` (to map between image scales)."""
        return self.with_(
            xyxy=self.xyxy * factor,
            landmarks=None if self.landmarks is None else self.landmarks * factor,
        )
