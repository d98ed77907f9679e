"""Backends on onnxruntime: the YuNet detector and ArcFace-style embedders.

This module holds what they share: opening an ``onnxruntime.InferenceSession`` with vigil's
thread and provider choices, translating onnxruntime's errors into :class:`ModelError`, and file
hashing for model cards.
"""

from __future__ import annotations

import hashlib
import inspect
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ModelError

_HASH_CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA-256 of the file at ``path``.

    Raises ModelError when the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


@cache
def ort_errors() -> tuple[type[BaseException], ...]:
    """The exception classes onnxruntime raises (its pybind classes derive from ``Exception``)."""
    errors: list[type[BaseException]] = [RuntimeError, ValueError]
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:  # pragma: no cover - layout of a different onnxruntime build
        return tuple(errors)
    for _, cls in inspect.getmembers(state, inspect.isclass):
        if issubclass(cls, Exception) and cls not in errors:
            errors.append(cls)
    return tuple(errors)


def providers() -> list[str]:
    """Execution providers to ask for: CUDA when this onnxruntime build offers it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
    return [*chosen, "CPUExecutionProvider"]


def create_session(path: Path, *, threads: int = 0) -> Any:
    """An ``onnxruntime.InferenceSession`` for the model file at ``path``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads; 0 lets onnxruntime choose (one per physical core).

    Raises:
        ModelError: the file is missing, is not a file, or onnxruntime cannot load it
            (corrupt, truncated, not ONNX, unsupported operators).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError("onnxruntime is not installed", hint="pip install onnxruntime") from exc

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist", hint="check the path to the .onnx file")
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file", hint="point to the .onnx file itself")
    if threads < 0:
        raise ModelError(f"threads must be 0 (automatic) or positive, got {threads}")

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; onnxruntime's warnings are not the user's concern
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers())
    except ort_errors() as exc:
        raise ModelError(
            f"cannot load ONNX model {path}: {_first_line(exc)}",
            hint="the file is corrupt, truncated or not an ONNX model; download it again",
        ) from exc


def run_session(session: Any, feeds: dict[str, npt.NDArray[np.float32]], what: str) -> list[npt.NDArray[Any]]:
    """``session.run`` on ``feeds`` with onnxruntime's errors raised as ModelError.

    Returns the model's outputs in the session's output order.
    """
    try:
        outputs: list[npt.NDArray[Any]] = session.run(None, feeds)
    except ort_errors() as exc:
        raise ModelError(
            f"running {what} failed: {_first_line(exc)}",
            hint="the model does not take the input this backend prepares; check the model and its card",
        ) from exc
    return outputs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
