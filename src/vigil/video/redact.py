"""Redaction: every face in a video file or a folder of images blurred, or every face but the named
identities'.

Two passes over the source. The first detects faces (on every frame by default: safety over speed),
follows them with :class:`~vigil.video.tracker.IouTracker`, and, when identities are to be kept,
embeds each track's best shots and matches the best against the galleries
(:func:`~vigil.gallery.matching.identify_faces`). It yields a :class:`BlurPlan`: the boxes to blur on
each frame. The second pass decodes the source again and writes it with those boxes pixelated.

What is blurred on a frame: every detection (tracked or not, however weak above
``video_min_confidence``), each grown by ``margin`` face sizes; with ``detect_every`` > 1 the
tracks' motion-predicted boxes on the frames between detections, grown further; and a box no
longer detected stays blurred for ``hold_frames`` frames (a face the detector lost for a moment
is still hidden). Only the faces of a track matched above threshold to a kept identity are left.

A blurred box is pixelated to :data:`BLOCKS` blocks across and then smoothed: what is left of a
face is a few dozen averages, which no deblurring can turn back into the face.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import App
from vigil.core.errors import InputError
from vigil.core.frame import Frame
from vigil.core.types import FaceDetections
from vigil.gallery.identities import list_identities
from vigil.gallery.matching import identify_faces
from vigil.storage import audit
from vigil.video.detection import video_detector
from vigil.video.sources import FileSource, ImageFolderSource, SourceStatus, open_source
from vigil.video.tracker import IouTracker

BLOCKS = 6
"""Pixel blocks across a blurred box (its long side)."""

Progress = Callable[[int, int], None]
"""``on_progress(frames_done, frames_total)``; the total counts both passes."""

F32 = npt.NDArray[np.float32]


class RedactOptions(BaseModel):
    """What to keep and how hard to look.

    Attributes:
        keep: identities whose faces stay visible (matched above threshold in ``galleries``).
        galleries: where ``keep`` is looked up (None: every unexpired gallery).
        detect_every: detect on every N-th frame (1: every frame, the default); the frames between
            blur the tracks' predicted boxes, grown by ``margin`` more per frame of gap.
        margin: each box grown by this share of its size on every side.
        hold_frames: frames a box stays blurred after its face was last detected.
    """

    model_config = ConfigDict(extra="forbid")

    keep: list[str] = Field(default_factory=list, max_length=100)
    galleries: list[str] | None = None
    detect_every: int = Field(default=1, ge=1, le=30)
    margin: float = Field(default=0.25, ge=0.0, le=2.0)
    hold_frames: int = Field(default=5, ge=0, le=300)


class RedactResult(BaseModel):
    """What :func:`redact` wrote."""

    source: str
    out: str
    kind: Literal["video", "images"]
    output_sha256: str
    """The video file's SHA-256; for a folder, the SHA-256 of its ``name sha256`` lines, sorted."""
    frames: int
    faces_blurred: int
    """Boxes blurred, summed over the frames."""
    tracks: int
    kept_tracks: int
    kept_identities: list[str]
    detect_every: int


@dataclass
class BlurPlan:
    """The first pass's result: for each frame index, the (n, 4) float32 xyxy boxes to blur and
    (n,) int64 ids (a track's id; a negative id for a detection no track took)."""

    boxes: dict[int, tuple[F32, npt.NDArray[np.int64]]] = field(default_factory=dict)
    tracks: int = 0
    kept_tracks: dict[int, str] = field(default_factory=dict)
    """track id -> the kept identity it matched."""
    frames: int = 0
    size_wh: tuple[int, int] = (0, 0)


@dataclass
class _Held:
    box: F32
    last_frame: int


@dataclass
class _Shot:
    quality: float
    embedding: F32


def grow(boxes: F32, margin: float, width: int, height: int) -> npt.NDArray[np.int32]:
    """``boxes`` ((n, 4) xyxy) grown by ``margin`` of their size on every side, clipped, whole pixels."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.int32)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = np.stack(
        [
            np.floor(boxes[:, 0] - margin * w),
            np.floor(boxes[:, 1] - margin * h),
            np.ceil(boxes[:, 2] + margin * w),
            np.ceil(boxes[:, 3] + margin * h),
        ],
        axis=1,
    )
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out.astype(np.int32)


def blur_boxes(bgr: npt.NDArray[np.uint8], boxes: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """A copy of ``bgr`` ((h, w, 3) uint8) with each whole-pixel xyxy box pixelated and smoothed."""
    import cv2

    out = bgr.copy()
    for x1, y1, x2, y2 in boxes:
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        region = out[y1:y2, x1:x2]
        h, w = region.shape[:2]
        scale = BLOCKS / max(h, w)
        small = cv2.resize(
            region, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        blocks = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        k = max(3, (min(h, w) // BLOCKS) | 1)
        out[y1:y2, x1:x2] = cv2.GaussianBlur(blocks, (k, k), 0)
    return out


def _frames(spec: Path) -> Iterator[Frame]:
    source = open_source(str(spec))
    try:
        for item in source:
            if not isinstance(item, SourceStatus):
                yield item
    finally:
        source.close()


def _check_paths(source: Path, out: Path) -> Literal["video", "images"]:
    if not source.exists():
        raise InputError(f"{source}: no such file or folder", hint="give a video file or a folder of images")
    kind: Literal["video", "images"] = "images" if source.is_dir() else "video"
    if out.resolve() == source.resolve():
        raise InputError(f"{out}: the output would overwrite the source", hint="write to another path")
    if kind == "video" and out.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise InputError(f"{out}: the redacted video is written as MPEG-4", hint="name the output FILE.mp4")
    if kind == "images" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: not an empty folder", hint="write the redacted images to a new folder")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder", hint="create it first")
    return kind


def _count(spec: Path) -> int:
    source = open_source(str(spec))
    try:
        if isinstance(source, FileSource):
            return max(0, source.frame_count)
        if isinstance(source, ImageFolderSource):
            return len(source.files)
        return 0
    finally:
        source.close()


class _Planner:
    """The first pass, one frame at a time."""

    def __init__(self, app: App, options: RedactOptions, *, stills: bool = False) -> None:
        s = app.settings
        self.stills = stills
        """A folder of images: each is its own scene (no box carried from one to the next)."""
        self.app = app
        self.options = options
        self.detector = video_detector(s, base=app.engine.detector)
        self.tracker = IouTracker(high_score=s.video_track_confidence, max_lost_s=s.video_max_lost_s)
        self.held: dict[int, _Held] = {}
        self.untracked = 0
        self.shots: dict[int, list[_Shot]] = {}
        self.plan = BlurPlan()

    def frame(self, frame: Frame) -> None:
        """Plan ``frame``'s boxes (and embed best shots when identities are kept)."""
        o = self.options
        h, w = frame.bgr.shape[:2]
        self.plan.size_wh = (w, h)
        self.plan.frames += 1
        gap = 0 if self.stills else frame.index % o.detect_every
        if self.stills:
            self.held.clear()
        if gap == 0:
            faces = self.detector.detect(frame.bgr)
            tracked = self._track(frame, faces)
            boxes, ids = self._seen(frame.index, faces, tracked)
            if o.keep and len(tracked):
                self._shoot(frame, tracked)
        else:
            self.tracker.advance(frame.pos_s)
            tids, boxes = self.tracker.predicted(frame.index)
            boxes = _widened(boxes, o.margin * gap)
            ids = np.asarray(tids, np.int64)
        now = set(ids.tolist())
        window = o.hold_frames + o.detect_every - 1
        held = [
            (k, v.box) for k, v in self.held.items() if k not in now and frame.index - v.last_frame <= window
        ]
        self.held = {k: v for k, v in self.held.items() if frame.index - v.last_frame <= window}
        if held:
            boxes = np.concatenate([boxes, np.stack([b for _, b in held])]).astype(np.float32)
            ids = np.concatenate([ids, np.asarray([k for k, _ in held], np.int64)])
        if len(boxes):
            self.plan.boxes[frame.index] = (boxes.astype(np.float32), ids)

    def _track(self, frame: Frame, faces: FaceDetections) -> FaceDetections:
        """The tracked faces of a frame; in a folder of images, every face is a track of its own."""
        if self.stills:
            first = self.plan.tracks + 1
            self.plan.tracks += len(faces)
            return faces.with_(track_id=np.arange(first, first + len(faces), dtype=np.int64))
        update = self.tracker.update(faces, frame.index, frame.pos_s)
        self.plan.tracks += len(update.started)
        return update.faces

    def _seen(
        self, index: int, faces: FaceDetections, tracked: FaceDetections
    ) -> tuple[F32, npt.NDArray[np.int64]]:
        """Every detection of a frame with its id, each held for ``hold_frames`` under that id."""
        tracked_ids = tracked.track_id if tracked.track_id is not None else np.zeros(0, np.int64)
        by_box = {tuple(np.round(b, 2)): int(t) for b, t in zip(tracked.xyxy, tracked_ids, strict=True)}
        ids = []
        for box in faces.xyxy:
            tid = by_box.get(tuple(np.round(box, 2)))
            if tid is None:
                self.untracked -= 1
                tid = self.untracked
            self.held[tid] = _Held(np.asarray(box, np.float32), index)
            ids.append(tid)
        return faces.xyxy.astype(np.float32), np.asarray(ids, np.int64)

    def _shoot(self, frame: Frame, tracked: FaceDetections) -> None:
        """Embed the tracked faces whose quality beats the track's shots so far (a few per track)."""
        assert tracked.track_id is not None
        quality = tracked.quality if tracked.quality is not None else np.zeros(len(tracked), np.float32)
        limit = self.app.settings.video_embeds_per_track
        chosen = [
            i
            for i, (tid, q) in enumerate(zip(tracked.track_id, quality, strict=True))
            if len(self.shots.get(int(tid), [])) < limit
            and float(q) > max((s.quality for s in self.shots.get(int(tid), [])), default=-1.0)
        ]
        if not chosen:
            return
        picked = tracked[np.asarray(chosen, np.int64)]
        if picked.landmark_scheme == "dlib5" and self.app.engine.embedder.card.id.startswith("dlib"):
            picked = picked.with_(landmarks=None)  # found at the detection scale: refit at full size
        embedded = self.app.engine.embedder.embed(frame.bgr, picked)
        for j, tid in enumerate(picked.track_id if picked.track_id is not None else []):
            self.shots.setdefault(int(tid), []).append(
                _Shot(float(quality[chosen[j]]), np.asarray(embedded[j], np.float32))
            )

    def decide(self) -> None:
        """Each track's best shot matched against the galleries: kept when it is a kept identity."""
        if not self.options.keep or not self.shots:
            return
        tids = sorted(self.shots)
        best = [max(self.shots[t], key=lambda s: s.quality) for t in tids]
        faces = FaceDetections(
            xyxy=np.zeros((len(tids), 4), np.float32),
            score=np.ones(len(tids), np.float32),
            embedding=np.stack([b.embedding for b in best]),
        )
        result = identify_faces(self.app, faces, self.options.galleries)
        wanted = set(self.options.keep)
        for tid, face in zip(tids, result.faces, strict=True):
            if face.decision in wanted:
                self.plan.kept_tracks[tid] = face.decision


def _widened(boxes: F32, margin: float) -> F32:
    """``boxes`` grown by ``margin`` of their size on every side (unclipped floats)."""
    if len(boxes) == 0 or margin <= 0:
        return boxes.astype(np.float32)
    size = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] - margin * size, boxes[:, 2:] + margin * size], axis=1).astype(
        np.float32
    )


def plan_blur(
    app: App, source: Path, options: RedactOptions | None = None, *, on_progress: Progress | None = None
) -> BlurPlan:
    """The first pass over ``source`` (a video file or a folder of images): the boxes to blur."""
    options = options or RedactOptions()
    _known(app, options)
    total = _count(source)
    planner = _Planner(app, options, stills=source.is_dir())
    for frame in _frames(source):
        planner.frame(frame)
        if on_progress is not None:
            on_progress(planner.plan.frames, 2 * max(total, planner.plan.frames))
    planner.decide()
    return planner.plan


def check_keep(app: App, options: RedactOptions) -> None:
    """Refuse kept names that no searched gallery holds, before any frame is read (:class:`InputError`)."""
    _known(app, options)


def _known(app: App, options: RedactOptions) -> None:
    """Refuse kept names that no searched gallery holds (a typo would blur the person it meant)."""
    if not options.keep:
        return
    searched: list[str | None] = list(options.galleries) if options.galleries else [None]
    names = {i.name for g in searched for i in list_identities(app, g)}
    for name in options.keep:
        if not name.strip() or any(ord(c) < 32 for c in name):
            raise InputError(f"--keep {name!r}: not an identity name", hint="give the name as enrolled")
        if name not in names:
            raise InputError(
                f"--keep {name!r}: no such identity in "
                + (", ".join(options.galleries) if options.galleries else "any gallery"),
                hint="check the name with `vigil people list GALLERY`",
            )


def to_blur(plan: BlurPlan, index: int, margin: float) -> npt.NDArray[np.int32]:
    """The whole-pixel boxes blurred on frame ``index``: the plan's, less the kept tracks', grown.

    A box lying mostly (:data:`SAME_FACE`) inside a kept face's box is that face found twice, and kept."""
    entry = plan.boxes.get(index)
    if entry is None:
        return np.zeros((0, 4), np.int32)
    boxes, ids = entry
    kept = np.asarray([int(i) in plan.kept_tracks for i in ids], bool)
    blur = ~kept
    if kept.any():
        blur &= _inside_share(boxes, boxes[kept]) < SAME_FACE
    return grow(boxes[blur], margin, *plan.size_wh)


SAME_FACE = 0.6
"""The share of a detection inside a kept face's box above which it is taken as that face."""


def _inside_share(boxes: F32, others: F32) -> F32:
    """(n,) the largest share of each box's area that lies inside one of ``others``."""
    x1 = np.maximum(boxes[:, None, 0], others[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], others[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], others[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    share: F32 = (inter.max(axis=1) / area).astype(np.float32)
    return share


def redact(
    app: App,
    source: Path,
    out: Path,
    options: RedactOptions | None = None,
    *,
    actor: str = audit.SYSTEM,
    on_progress: Progress | None = None,
    on_plan: Callable[[BlurPlan], None] | None = None,
) -> RedactResult:
    """Write ``source`` (a video file, or a folder of images) to ``out`` (an MPEG-4 file, or a new
    folder) with every face blurred but those of ``options.keep``. Audited (``redact``: the source's
    name, the output's SHA-256, frames, faces blurred, the kept identities).

    ``on_plan`` is given the first pass's :class:`BlurPlan` (to measure what was blurred)."""
    options = options or RedactOptions()
    kind = _check_paths(source, out)
    plan = plan_blur(app, source, options, on_progress=on_progress)
    if on_plan is not None:
        on_plan(plan)
    if plan.frames == 0:
        raise InputError(f"{source}: no frame could be read", hint="check the file plays in a video player")
    blurred = _write(source, out, kind, plan, options, on_progress)
    digest = _sha256_file(out) if kind == "video" else _sha256_folder(out)
    result = RedactResult(
        source=source.name,
        out=str(out),
        kind=kind,
        output_sha256=digest,
        frames=plan.frames,
        faces_blurred=blurred,
        tracks=plan.tracks,
        kept_tracks=len(plan.kept_tracks),
        kept_identities=sorted(set(plan.kept_tracks.values())),
        detect_every=options.detect_every,
    )
    audit.record(
        app,
        actor,
        "redact",
        target_type=kind,
        target_name=source.name[:200],
        output_sha256=digest,
        frames=result.frames,
        faces_blurred=blurred,
        kept_identities=result.kept_identities,
        keep_asked=options.keep,
        detect_every=options.detect_every,
    )
    return result


def _write(
    source: Path,
    out: Path,
    kind: Literal["video", "images"],
    plan: BlurPlan,
    options: RedactOptions,
    on_progress: Progress | None,
) -> int:
    """The second pass: every frame written with its boxes blurred; the boxes blurred in all."""
    import cv2

    writer = None
    blurred = 0
    done = 0
    if kind == "video":
        fps = FileSource(source, source.name).source_fps
        w, h = plan.size_wh
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise InputError(f"{out}: cannot write a video here", hint="check the folder is writable")
    else:
        out.mkdir(exist_ok=True)
        names = ImageFolderSource(source, source.name).files
    try:
        for frame in _frames(source):
            boxes = to_blur(plan, frame.index, options.margin)
            blurred += len(boxes)
            image = blur_boxes(frame.bgr, boxes)
            if writer is not None:
                writer.write(image)
            else:
                target = out / (Path(names[frame.index].name).stem + ".png")
                if not cv2.imwrite(str(target), image):
                    raise InputError(f"{target}: cannot write", hint="check the folder is writable")
            done += 1
            if on_progress is not None:
                on_progress(plan.frames + done, 2 * plan.frames)
    finally:
        if writer is not None:
            writer.release()
    return blurred


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_folder(folder: Path) -> str:
    lines = sorted(f"{p.name} {_sha256_file(p)}" for p in folder.iterdir() if p.is_file())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


__all__ = ["BlurPlan", "RedactOptions", "RedactResult", "blur_boxes", "plan_blur", "redact"]
