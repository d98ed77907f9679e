"""onnxruntime sessions for the converted dlib models: providers, threads, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vigil.core.errors import ModelError


def pick_providers(available: list[str]) -> list[str]:
    """CUDA first when onnxruntime-gpu offers it, the CPU always."""
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def open_session(graph: Path, threads: int = 0) -> Any:
    """An inference session on ``graph`` with ``threads`` intra-op threads (0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(graph), options, providers=pick_providers(ort.get_available_providers())
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(
            f"onnxruntime cannot load {graph}: {exc}", hint="delete the file to convert again"
        ) from exc
