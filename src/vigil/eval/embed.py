"""One embedding per image file, for evaluation and calibration, with an on-disk cache.

Each image yields the embedding of "the" face: of the faces the engine's detector finds, the one
whose box centre is nearest the image centre. When none is found, a centred box covering the middle
of the image (x and y from 28 % to 72 % of the shorter side, centred; 70..180 on LFW's 250x250
images) is embedded instead, without landmarks, and counted as a fallback.

Embeddings are cached under ``settings.data_dir / "cache" / "embeddings" /
"<model id>-<detector>-<settings hash>.npz"``, keyed by the SHA-256 of the file bytes, so a second
run over the same files only hashes them. The cache file also records the settings it was made with
(:func:`cache_fingerprint`); a cache made with others is not reused but replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vigil.core.config import Settings
from vigil.core.errors import ModelError, VigilError
from vigil.core.modelcard import load_card
from vigil.core.types import FaceDetections
from vigil.vision.engine import FaceEngine, build_embedder, build_engine
from vigil.vision.image import decode_image

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called as images finish (cache hits count at once)."""

FALLBACK_FRACTION = (0.28, 0.72)
"""The fallback box spans these fractions of the shorter image side, centred on the image."""

_ERRORS_LOGGED = 20
"""Unreadable files logged one by one; the rest are summed up in one line."""

_CACHE_SAVE_EVERY = 500
"""New embeddings between intermediate cache writes (so an interrupted run keeps its work)."""


@dataclass(frozen=True)
class EmbeddedSet:
    """Embeddings of a list of image files, one per file, in the order given.

    Attributes:
        paths: the n image files.
        vectors: (n, d) float32 L2-normalised embeddings; rows of unreadable files are NaN.
        detected: (n,) bool, True where a face was detected, False for a fallback box or an error.
        model: the embedder's model id.
        errors: ``(path, message)`` for every file that could not be read or embedded.
    """

    paths: list[Path]
    vectors: npt.NDArray[np.float32]
    detected: npt.NDArray[np.bool_]
    model: str
    errors: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        """(n,) bool: the file was read and embedded (detected or by fallback)."""
        return np.asarray(~np.isnan(self.vectors).any(axis=1), dtype=np.bool_)

    @property
    def fallbacks(self) -> int:
        """Images embedded from the fallback box (no face detected)."""
        return int((self.ok & ~self.detected).sum())

    def __len__(self) -> int:
        return len(self.paths)


# -- face choice ----------------------------------------------------------------------------------
def fallback_box(width: int, height: int) -> npt.NDArray[np.float32]:
    """(1, 4) float32 ``x1, y1, x2, y2`` of the centred fallback box for a ``width`` x ``height`` image."""
    side = min(width, height)
    lo, hi = FALLBACK_FRACTION
    half = (hi - lo) * side / 2
    cx, cy = width / 2, height / 2
    return np.array([[cx - half, cy - half, cx + half, cy + half]], np.float32)


def fallback_face(width: int, height: int) -> FaceDetections:
    """The fallback box of a ``width`` x ``height`` image with the ArcFace template's points in it."""
    from vigil.vision.onnx.arcface import ARCFACE_TEMPLATE_112

    box = fallback_box(width, height)
    side = float(box[0, 2] - box[0, 0])
    points = box[0, :2] + ARCFACE_TEMPLATE_112 * (side / 112.0)
    return FaceDetections(
        xyxy=box,
        score=np.zeros(1, np.float32),
        landmarks=points[None].astype(np.float32),
        landmark_scheme="arcface5",
    )


def central_face(faces: FaceDetections, width: int, height: int) -> int:
    """Index of the face whose box centre is nearest the image centre (``faces`` must not be empty)."""
    centres = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
    d2 = ((centres - np.array([width / 2, height / 2], np.float32)) ** 2).sum(axis=1)
    return int(np.argmin(d2))


def embed_image(engine: FaceEngine, bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], bool]:
    """The central face of ``bgr`` ((h, w, 3) uint8): its (d,) float32 embedding, and whether detected."""
    h, w = bgr.shape[:2]
    faces = engine.detector.detect(bgr)
    if len(faces) > 0:
        chosen = faces[central_face(faces, w, h)]
        detected = True
    else:
        chosen = fallback_face(w, h)
        detected = False
    vector = engine.embedder.embed(bgr, chosen)
    return np.asarray(vector[0], np.float32), detected


# -- worker side ----------------------------------------------------------------------------------
_worker_engine: FaceEngine | None = None
_worker_settings: Settings | None = None

_Result = tuple[str, npt.NDArray[np.float32] | None, bool, str | None]
"""(sha256, vector or None, detected, error message or None)."""


def _init_worker(settings: Settings) -> None:
    """Pool initializer: one engine per worker process, single-threaded model runtimes."""
    global _worker_engine, _worker_settings
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if settings.threads == 0:  # one thread per worker process: the processes are the parallelism
        settings = settings.model_copy(update={"threads": 1})
    _worker_settings = settings
    _worker_engine = build_engine(settings)


def _embed_file(engine: FaceEngine, settings: Settings, path: Path) -> _Result:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return "", None, False, f"{path}: cannot read ({exc.strerror or exc})"
    sha = hashlib.sha256(data).hexdigest()
    try:
        image = decode_image(
            data,
            name=str(path),
            max_pixels=settings.max_image_pixels,
            max_bytes=settings.max_upload_bytes,
            max_memory_bytes=settings.max_image_memory_bytes,
        )
        vector, detected = embed_image(engine, image.bgr)
    except VigilError as exc:
        return sha, None, False, str(exc)
    except Exception as exc:  # one bad file must never stop a run of thousands
        log.debug("embedding %s failed", path, exc_info=True)
        return sha, None, False, f"{path}: {type(exc).__name__}: {exc}"
    return sha, vector, detected, None


def _worker_embed(path: Path) -> _Result:
    if _worker_engine is None or _worker_settings is None:
        raise RuntimeError("embedding worker used before its initializer ran")
    return _embed_file(_worker_engine, _worker_settings, path)


# -- cache ----------------------------------------------------------------------------------------
_CACHE_VERSION = 2  # 2: the fallback box carries ArcFace points


def cache_fingerprint(settings: Settings) -> str:
    """The settings an embedding depends on besides the file bytes and the model id, as a string.

    A cache written under other detection settings is not reused.
    """
    fields = {
        "version": _CACHE_VERSION,
        "fallback": FALLBACK_FRACTION,
        "detector": settings.detector,
        "onnx_detector": str(settings.onnx_detector_path or ""),
        "onnx_embedder": str(settings.onnx_embedder_path or ""),
        "embedder": settings.embedder,
        "model_pack": settings.model_pack or "",
        "alignment": _alignment(settings),
    }
    for name in ("detect_max_side_px", "detect_upsample_below_px", "detect_min_confidence"):
        fields[name] = getattr(settings, name, None)
    return json.dumps(fields, sort_keys=True)


def _alignment(settings: Settings) -> str:
    """How the embedder aligns faces under ``settings`` (a cache made with another alignment is stale)."""
    arcface_pack = settings.model_pack not in (None, "dlib", "custom")
    if arcface_pack or settings.embedder not in ("dlib-resnet", "dlib-onnx"):
        return "arcface5-112"
    from vigil.vision.dlib.embedder import MODEL_ID, dlib_alignment

    return dlib_alignment(settings.detector, load_card(MODEL_ID, settings.cards_dir), settings.dlib_landmarks)


@dataclass
class _Cache:
    path: Path
    dimension: int
    fingerprint: str
    entries: dict[str, tuple[npt.NDArray[np.float32], bool]] = field(default_factory=dict)
    new: int = 0

    @classmethod
    def open(cls, path: Path, dimension: int, fingerprint: str) -> _Cache:
        cache = cls(path=path, dimension=dimension, fingerprint=fingerprint)
        cache.entries = cache._read()
        return cache

    def _read(self) -> dict[str, tuple[npt.NDArray[np.float32], bool]]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                keys = npz["keys"]
                vectors = np.asarray(npz["vectors"], np.float32)
                detected = np.asarray(npz["detected"], np.bool_)
                fingerprint = str(npz["fingerprint"]) if "fingerprint" in npz.files else ""
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            log.warning("ignoring unreadable embedding cache %s: %s", self.path, exc)
            return {}
        if fingerprint != self.fingerprint:
            log.info("not reusing embedding cache %s: made with other detection settings", self.path)
            return {}
        if (
            vectors.ndim != 2
            or vectors.shape[1] != self.dimension
            or not len(keys) == len(vectors) == len(detected)
        ):
            log.warning("ignoring embedding cache %s: shapes do not match the model", self.path)
            return {}
        return {str(k): (v, bool(d)) for k, v, d in zip(keys, vectors, detected, strict=True)}

    def get(self, sha: str) -> tuple[npt.NDArray[np.float32], bool] | None:
        return self.entries.get(sha)

    def put(self, sha: str, vector: npt.NDArray[np.float32], detected: bool) -> None:
        self.entries[sha] = (vector, detected)
        self.new += 1
        if self.new % _CACHE_SAVE_EVERY == 0:
            self.save()

    def save(self) -> None:
        """Merge with what is on disk now (another run may have added entries) and replace atomically."""
        if self.new == 0:
            return
        merged = self._read()
        merged.update(self.entries)
        self.entries = merged
        keys = np.array(sorted(merged), dtype="U64")
        vectors = (
            np.stack([merged[k][0] for k in keys]).astype(np.float32)
            if len(keys)
            else np.zeros((0, self.dimension), np.float32)
        )
        detected = np.array([merged[k][1] for k in keys], np.bool_)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=self.path.stem + ".", suffix=".tmp", dir=self.path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh, keys=keys, vectors=vectors, detected=detected, fingerprint=np.array(self.fingerprint)
                )
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("could not write embedding cache %s: %s", self.path, exc)
            tmp.unlink(missing_ok=True)


def cache_path(settings: Settings, model_id: str, detector_name: str) -> Path:
    """Where embeddings of ``model_id`` with detector ``detector_name`` under ``settings`` are cached.

    The name carries a short hash of :func:`cache_fingerprint`, so runs under different detection
    settings (calibration, LFW evaluation) keep their own caches instead of replacing each other's.
    """
    tag = hashlib.sha256(cache_fingerprint(settings).encode()).hexdigest()[:10]
    return settings.data_dir / "cache" / "embeddings" / f"{model_id}-{detector_name}-{tag}.npz"


def _file_sha(path: Path) -> tuple[str | None, str | None]:
    """(sha256, None) or (None, error message)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest(), None
    except IsADirectoryError:
        return None, f"{path}: is a folder, not an image"
    except OSError as exc:
        return None, f"{path}: cannot read ({exc.strerror or exc})"


# -- main entry -----------------------------------------------------------------------------------
def embed_files(
    settings: Settings,
    paths: Sequence[Path],
    *,
    workers: int = 2,
    progress: Progress | None = None,
    engine: FaceEngine | None = None,
) -> EmbeddedSet:
    """Embed the central face of each image file (see the module docstring).

    Args:
        settings: chooses the engine and the data directory holding the cache.
        paths: image files; duplicates are embedded once.
        workers: processes; 1 embeds in this process.
        progress: called as ``progress(done, total)``.
        engine: an engine already built from ``settings``; with ``workers=1`` it is used, else one
            is built when an image is not in the cache.

    Unreadable or undecodable files never stop the run: they are listed in ``errors`` and their
    rows are NaN. With ``workers > 1`` the worker processes are spawned, so a script calling this
    needs the usual ``if __name__ == "__main__":`` guard.

    Raises:
        ModelError: the engine cannot be built, or a worker process died (finished work is cached).
    """
    model_id, dim = _identity(settings, engine)
    cache = _Cache.open(cache_path(settings, model_id, settings.detector), dim, cache_fingerprint(settings))

    paths = [Path(p) for p in paths]
    n = len(paths)
    vectors = np.full((n, dim), np.nan, np.float32)
    detected = np.zeros(n, np.bool_)
    errors: dict[int, str] = {}

    # Which rows need computing; identical files (same bytes) are embedded once.
    todo: dict[Path, list[int]] = {}
    for i, path in enumerate(paths):
        sha, err = _file_sha(path)
        hit = cache.get(sha) if sha is not None else None
        if err is not None:
            errors[i] = err
        elif hit is not None:
            vectors[i], detected[i] = hit
        else:
            todo.setdefault(path, []).append(i)
    done = n - sum(len(rows) for rows in todo.values())
    log.info(
        "embedding %d of %d images (%d cached, %d unreadable)", len(todo), n, done - len(errors), len(errors)
    )
    if progress is not None:
        progress(done, n)

    if engine is None and todo and (workers <= 1 or len(todo) == 1):
        engine = build_engine(settings)
    try:
        for path, (sha, vector, det, err) in _run(settings, engine, list(todo), workers):
            rows = todo[path]
            if vector is None:
                for i in rows:
                    errors[i] = err or f"{path}: not embedded"
            else:
                vectors[rows] = vector
                detected[rows] = det
                cache.put(sha, vector, det)
            done += len(rows)
            if progress is not None:
                progress(done, n)
    finally:
        cache.save()

    for k, i in enumerate(sorted(errors)):
        if k == _ERRORS_LOGGED:
            log.warning("... and %d more unreadable images", len(errors) - k)
            break
        log.warning("skipped %s", errors[i])
    return EmbeddedSet(
        paths=paths,
        vectors=vectors,
        detected=detected,
        model=model_id,
        errors=[(paths[i], errors[i]) for i in sorted(errors)],
    )


def _identity(settings: Settings, engine: FaceEngine | None) -> tuple[str, int]:
    """(model id, dimension) of the embedder, without loading the dlib model when avoidable."""
    if engine is not None:
        return engine.model_id, engine.card.dimension
    if settings.model_pack in (None, "dlib", "custom") and settings.embedder in ("dlib-resnet", "dlib-onnx"):
        from vigil.vision.dlib.embedder import MODEL_ID

        card = load_card(MODEL_ID, settings.cards_dir)
        return card.id, card.dimension
    card = build_embedder(settings).card
    return card.id, card.dimension


def _run(
    settings: Settings, engine: FaceEngine | None, paths: list[Path], workers: int
) -> Iterator[tuple[Path, _Result]]:
    """(path, result) for each of ``paths``, in completion order."""
    if not paths:
        return
    if engine is not None and (workers <= 1 or len(paths) == 1):
        for path in paths:
            yield path, _embed_file(engine, settings, path)
        return
    worker_settings = settings.model_copy(update={"threads": 1}) if settings.threads == 0 else settings
    ctx = multiprocessing.get_context("spawn")  # never fork a process holding model runtimes' threads
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(paths)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(worker_settings,),
    )
    try:
        futures: dict[Future[_Result], Path] = {pool.submit(_worker_embed, p): p for p in paths}
        for future in as_completed(futures):
            path = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool as exc:
                raise ModelError(
                    f"an embedding worker process died ({exc})",
                    hint="run again (finished embeddings are cached) or use workers=1 to see the error",
                ) from exc
            yield path, result
    finally:
        # On an interrupt, drop the queued work instead of finishing it.
        pool.shutdown(wait=True, cancel_futures=True)
