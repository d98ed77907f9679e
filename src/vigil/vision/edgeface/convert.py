"""Convert an upstream EdgeFace checkpoint (``.pt``) into an ONNX file, once, and cache it.

:func:`convert_checkpoint` reads the state dict (:mod:`.checkpoint`), builds the graph (:mod:`.graph`)
and writes it atomically. :func:`ensure_onnx` keeps the converted file in a cache folder under the
conventions of the dlib converter (:mod:`vigil.vision.dlib_onnx.convert`): the file is named after the
source's SHA-256 and the converter version, a JSON manifest beside it records both SHA-256s, a changed
source converts again and a damaged cached copy is replaced.

Example::

    onnx_path = ensure_onnx(Path("edgeface_xs_q.pt"), data_dir / "models")
    # input: (N, 3, 112, 112) float32 RGB, ArcFace-aligned, (x / 255 - 0.5) / 0.5
    # output "embedding": (N, 512) float32; L2-normalise it
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from vigil.core.errors import ModelError
from vigil.vision.edgeface.checkpoint import MAX_TOTAL_BYTES, load_checkpoint
from vigil.vision.edgeface.graph import build_onnx
from vigil.vision.edgeface.network import EdgeFaceNet, parse_edgeface
from vigil.vision.onnx import sha256_file

CONVERTER_VERSION = 1
"""Bumped whenever the produced graph changes; part of the cache key."""
PREPROCESSING = (
    "RGB 112x112 aligned on the ArcFace 5-point template, (x / 255 - 0.5) / 0.5; L2-normalise the output"
)
"""What the graph expects and what to do with its output, as written into its metadata."""


@dataclass(frozen=True)
class ConversionInfo:
    """What a conversion produced.

    Attributes:
        variant: upstream's name for the model, e.g. ``edgeface_xs_q``, ``edgeface_s_gamma_05``.
        source_sha256: lower-case hex SHA-256 of the ``.pt`` file.
        onnx_sha256: lower-case hex SHA-256 of the written ONNX file.
        parameter_count: number of weights read from the checkpoint.
        embedding_dim: length of the ``embedding`` output (512).
    """

    variant: str
    source_sha256: str
    onnx_sha256: str
    parameter_count: int
    embedding_dim: int


def variant_name(net: EdgeFaceNet, quantised: bool) -> str:
    """Upstream's name: ``edgeface_<size>``, ``_gamma_<ratio x 10>`` for LoRaLin layers, ``_q`` if int8."""
    name = f"edgeface_{net.size}"
    if net.rank_ratio is not None:
        name += f"_gamma_{round(net.rank_ratio * 10):02d}"
    return name + ("_q" if quantised else "")


def _read_source(src: Path) -> bytes:
    try:
        if src.stat().st_size > MAX_TOTAL_BYTES:
            raise ModelError(f"{src} is over the {MAX_TOTAL_BYTES >> 20} MiB cap of a checkpoint")
        return src.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read EdgeFace checkpoint {src}: {exc.strerror or exc}",
            hint="check the path to the .pt file",
        ) from exc


def _write_atomically(dst: Path, data: bytes) -> None:
    """Write ``data`` to ``dst`` through a temporary file in the same folder and a rename."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    except OSError as exc:
        raise ModelError(f"cannot write {dst}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ModelError(f"cannot write {dst}: {exc.strerror or exc}") from exc
        raise


def convert_checkpoint(src: Path, dst: Path) -> ConversionInfo:
    """Convert the EdgeFace checkpoint ``src`` into the ONNX file ``dst`` (written atomically).

    The graph takes ``input`` (N, 3, 112, 112) float32 and returns ``embedding`` (N, 512) float32.

    Raises:
        ModelError: ``src`` is unreadable, not a safe state dict, or not an EdgeFace network;
            ``dst`` cannot be written. Nothing is left at ``dst`` then.
    """
    import onnx

    data = _read_source(src)
    source_sha = hashlib.sha256(data).hexdigest()
    checkpoint = load_checkpoint(data, name=str(src))
    try:
        net = parse_edgeface(checkpoint.tensors)
    except ModelError as exc:
        raise ModelError(f"{src}: {exc.message}", hint=exc.hint) from None
    variant = variant_name(net, bool(checkpoint.quantised_layers))
    model = build_onnx(
        net,
        {
            "vigil.variant": variant,
            "vigil.source_sha256": source_sha,
            "vigil.converter_version": str(CONVERTER_VERSION),
            "vigil.preprocessing": PREPROCESSING,
        },
    )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # a converter bug, not the user's file
        raise ModelError(f"the graph built from {src} is not valid ONNX: {exc}") from exc
    blob = model.SerializeToString()
    _write_atomically(dst, blob)
    return ConversionInfo(
        variant=variant,
        source_sha256=source_sha,
        onnx_sha256=hashlib.sha256(blob).hexdigest(),
        parameter_count=net.parameter_count,
        embedding_dim=net.embedding_dim,
    )


def cached_path(source_sha256: str, cache_dir: Path) -> Path:
    """Where :func:`ensure_onnx` keeps the conversion of a source with this SHA-256."""
    return cache_dir / f"edgeface-{source_sha256[:16]}-c{CONVERTER_VERSION}.onnx"


def _cache_is_valid(target: Path, manifest: Path, source_sha: str) -> bool:
    if not (target.is_file() and manifest.is_file()):
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("source_sha256") == source_sha
        and recorded.get("converter_version") == CONVERTER_VERSION
        and recorded.get("onnx_sha256") == sha256_file(target)
    )


def ensure_onnx(src: Path, cache_dir: Path) -> Path:
    """The ONNX conversion of the EdgeFace checkpoint ``src`` in ``cache_dir``, converted on first use.

    The file is ``edgeface-<first 16 hex of the source's SHA-256>-c<converter version>.onnx`` with a
    ``.json`` manifest (source name, both SHA-256s, the :class:`ConversionInfo`). A cached file whose
    SHA-256 no longer matches the manifest is converted again; a failed conversion leaves neither.

    Raises:
        ModelError: as :func:`convert_checkpoint`.
    """
    source_sha = sha256_file(src)
    target = cached_path(source_sha, cache_dir)
    manifest = target.with_suffix(".json")
    if _cache_is_valid(target, manifest, source_sha):
        return target
    try:
        info = convert_checkpoint(src, target)
        if info.source_sha256 != source_sha:
            raise ModelError(f"{src} changed while it was being converted", hint="convert it again")
        record = {"source": src.name, "converter_version": CONVERTER_VERSION, **asdict(info)}
        _write_atomically(manifest, json.dumps(record, indent=1).encode())
    except BaseException:
        target.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        raise
    return target
