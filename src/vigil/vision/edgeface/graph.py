"""The ONNX graph (opset 17) of an :class:`EdgeFaceNet`, built node by node with ``onnx.helper``.

``input`` (N, 3, 112, 112) float32 RGB scaled to [-1, 1] -> ``embedding`` (N, 512) float32, not
normalised. The layout follows timm's modules: convolutions in NCHW, LayerNorm and the MLPs
channels-last between two transposes, SDTA blocks on (N, H*W, C) tokens; GELU is the exact erf form
and the positional encoding, which depends only on the feature map's size, is a constant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ModelError
from vigil.vision.edgeface.network import Conv, ConvEncoder, EdgeFaceNet, Linear, Mlp, Norm, Sdta

F32 = npt.NDArray[np.float32]
INPUT_SIZE = 112
LN_EPS = 1e-6
"""LayerNorm epsilon of every EdgeNeXt norm."""


def positional_encoding(pos: Conv, height: int, width: int) -> F32:
    """timm's ``PositionalEncodingFourier`` for an ``height`` x ``width`` map: (H*W, C) float32.

    It depends only on the map's size and the projection's weights, so the graph holds it as a constant.
    """
    hidden = pos.weight.shape[1] // 2
    ones = np.ones((height, width), np.float32)
    y_embed, x_embed = ones.cumsum(0, dtype=np.float32), ones.cumsum(1, dtype=np.float32)
    scale = np.float32(2 * math.pi)
    y_embed = np.asarray(y_embed / (y_embed[-1:, :] + np.float32(1e-6)) * scale, np.float32)
    x_embed = np.asarray(x_embed / (x_embed[:, -1:] + np.float32(1e-6)) * scale, np.float32)
    dim_t = np.arange(hidden, dtype=np.float32)
    dim_t = np.float32(10000) ** (np.float32(2) * np.floor(dim_t / 2) / np.float32(hidden))

    def interleave(embed: F32) -> F32:
        p = embed[:, :, None] / dim_t
        return np.stack((np.sin(p[:, :, 0::2]), np.cos(p[:, :, 1::2])), axis=3).reshape(height, width, hidden)

    features = np.concatenate((interleave(y_embed), interleave(x_embed)), axis=2).reshape(-1, 2 * hidden)
    projected = features @ pos.weight.reshape(pos.weight.shape[0], -1).T + pos.bias
    return projected.astype(np.float32)


class _Graph:
    """Nodes and initialisers of the graph being built, with fresh names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._counter = 0
        self._scalars: dict[tuple[str, float], str] = {}

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def const(self, value: npt.NDArray[Any], prefix: str) -> str:
        name = self.fresh(prefix)
        array = np.array(value, copy=True, order="C")  # ascontiguousarray would make a scalar 1-d
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def scalar(self, value: float, dtype: type[np.generic] = np.float32) -> str:
        """A 0-d constant, one initialiser per value."""
        key = (np.dtype(dtype).str, value)
        if key not in self._scalars:
            self._scalars[key] = self.const(np.array(value, dtype), "scalar")
        return self._scalars[key]

    def ints(self, values: list[int], prefix: str = "shape") -> str:
        return self.const(np.array(values, np.int64), prefix)

    def op(self, kind: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        out = self.fresh(prefix)
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def many(self, kind: str, inputs: list[str], count: int, prefix: str, **attrs: Any) -> list[str]:
        outs = [self.fresh(prefix) for _ in range(count)]
        self.nodes.append(self.helper.make_node(kind, inputs, outs, **attrs))
        return outs


def _conv(g: _Graph, x: str, conv: Conv, name: str) -> str:
    k = conv.kernel
    pad = 0 if conv.stride > 1 else (k - 1) // 2
    inputs = [x, g.const(conv.weight, f"{name}.weight"), g.const(conv.bias, f"{name}.bias")]
    return g.op(
        "Conv",
        inputs,
        name,
        kernel_shape=[k, k],
        strides=[conv.stride] * 2,
        pads=[pad] * 4,
        group=conv.groups,
    )


def _layer_norm(g: _Graph, x: str, norm: Norm, name: str) -> str:
    inputs = [x, g.const(norm.weight, f"{name}.weight"), g.const(norm.bias, f"{name}.bias")]
    return g.op("LayerNormalization", inputs, name, axis=-1, epsilon=LN_EPS)


def _layer_norm_nchw(g: _Graph, x: str, norm: Norm, name: str) -> str:
    """timm's ``LayerNorm2d``: LayerNorm over the channels of an NCHW tensor."""
    x = g.op("Transpose", [x], f"{name}.nhwc", perm=[0, 2, 3, 1])
    return g.op("Transpose", [_layer_norm(g, x, norm, name)], f"{name}.nchw", perm=[0, 3, 1, 2])


def _linear_op(g: _Graph, x: str, fc: Linear, name: str) -> str:
    for i, factor in enumerate(fc.factors):
        x = g.op("MatMul", [x, g.const(factor.T, f"{name}.weight{i}")], f"{name}.matmul")
    return g.op("Add", [x, g.const(fc.bias, f"{name}.bias")], name) if fc.bias is not None else x


def _gelu(g: _Graph, x: str, name: str) -> str:
    """Exact (erf) GELU, the pattern onnxruntime fuses into one kernel."""
    t = g.op("Div", [x, g.scalar(math.sqrt(2))], f"{name}.div")
    t = g.op("Add", [g.op("Erf", [t], f"{name}.erf"), g.scalar(1.0)], f"{name}.add")
    t = g.op("Mul", [x, t], f"{name}.mul")
    return g.op("Mul", [t, g.scalar(0.5)], name)


def _mlp_op(g: _Graph, x: str, mlp: Mlp, name: str) -> str:
    """``gamma * fc2(gelu(fc1(x)))`` on channels-last ``x``."""
    x = _gelu(g, _linear_op(g, x, mlp.fc1, f"{name}.fc1"), f"{name}.gelu")
    x = _linear_op(g, x, mlp.fc2, f"{name}.fc2")
    return (
        g.op("Mul", [x, g.const(mlp.gamma, f"{name}.gamma")], f"{name}.scaled")
        if mlp.gamma is not None
        else x
    )


def _conv_encoder_op(g: _Graph, x: str, block: ConvEncoder, name: str) -> str:
    y = _conv(g, x, block.conv_dw, f"{name}.conv_dw")
    y = g.op("Transpose", [y], f"{name}.nhwc", perm=[0, 2, 3, 1])
    y = _mlp_op(g, _layer_norm(g, y, block.norm, f"{name}.norm"), block.mlp, f"{name}.mlp")
    y = g.op("Transpose", [y], f"{name}.nchw", perm=[0, 3, 1, 2])
    return g.op("Add", [x, y], name)


def _split_convs(g: _Graph, x: str, block: Sdta, name: str) -> str:
    pieces = g.many(
        "Split", [x, g.ints(list(block.chunks), "chunks")], len(block.chunks), f"{name}.chunk", axis=1
    )
    outputs, sp = [], pieces[0]
    for i, conv in enumerate(block.convs):
        if i > 0:
            sp = g.op("Add", [sp, pieces[i]], f"{name}.carry")
        sp = _conv(g, sp, conv, f"{name}.convs.{i}")
        outputs.append(sp)
    return g.op("Concat", [*outputs, pieces[-1]], f"{name}.split_convs", axis=1)


def _xca(g: _Graph, x: str, block: Sdta, dim: int, name: str) -> str:
    """Cross-covariance attention on (N, L, C): attention between channels, per head, over tokens."""
    heads = block.temperature.shape[0]
    qkv = _linear_op(g, x, block.qkv, f"{name}.qkv")
    qkv = g.op("Reshape", [qkv, g.ints([0, 0, 3, heads, dim // heads])], f"{name}.heads")
    qkv = g.op("Transpose", [qkv], f"{name}.qkv_t", perm=[2, 0, 3, 4, 1])  # (3, N, heads, C/heads, L)
    q, k, v = (
        g.op("Gather", [qkv, g.scalar(i, np.int64)], f"{name}.{p}", axis=0) for i, p in enumerate("qkv")
    )
    eps = g.scalar(1e-12)  # F.normalize's

    def normalise(t: str, what: str) -> str:
        length = g.op("ReduceL2", [t], f"{name}.{what}_norm", axes=[-1], keepdims=1)
        return g.op("Div", [t, g.op("Max", [length, eps], f"{name}.{what}_clip")], f"{name}.{what}_unit")

    k_t = g.op("Transpose", [normalise(k, "k")], f"{name}.k_t", perm=[0, 1, 3, 2])
    attn = g.op("MatMul", [normalise(q, "q"), k_t], f"{name}.attn")
    temperature = g.const(block.temperature.reshape(heads, 1, 1), f"{name}.temperature")
    attn = g.op("Softmax", [g.op("Mul", [attn, temperature], f"{name}.tempered")], f"{name}.softmax", axis=-1)
    y = g.op("Transpose", [g.op("MatMul", [attn, v], f"{name}.mixed")], f"{name}.tokens", perm=[0, 3, 1, 2])
    y = g.op("Reshape", [y, g.ints([0, 0, dim])], f"{name}.merged")
    return _linear_op(g, y, block.proj, f"{name}.proj")


def _sdta_op(g: _Graph, x: str, block: Sdta, size_hw: tuple[int, int], name: str) -> str:
    h, w = size_hw
    dim = sum(block.chunks)
    y = g.op("Reshape", [_split_convs(g, x, block, name), g.ints([0, dim, h * w])], f"{name}.flat")
    y = g.op("Transpose", [y], f"{name}.tokens", perm=[0, 2, 1])  # (N, H*W, C)
    if block.pos is not None:
        pos = positional_encoding(block.pos, h, w)[None]
        y = g.op("Add", [y, g.const(pos, f"{name}.pos_embd")], f"{name}.positioned")
    a = _xca(g, _layer_norm(g, y, block.norm_xca, f"{name}.norm_xca"), block, dim, f"{name}.xca")
    if block.gamma_xca is not None:
        a = g.op("Mul", [a, g.const(block.gamma_xca, f"{name}.gamma_xca")], f"{name}.xca_scaled")
    y = g.op("Reshape", [g.op("Add", [y, a], f"{name}.attended"), g.ints([0, h, w, dim])], f"{name}.nhwc")
    y = _mlp_op(g, _layer_norm(g, y, block.norm, f"{name}.norm"), block.mlp, f"{name}.mlp")
    y = g.op("Transpose", [y], f"{name}.nchw", perm=[0, 3, 1, 2])
    return g.op("Add", [x, y], name)


def _body(g: _Graph, net: EdgeFaceNet) -> str:
    x = _conv(g, "input", net.stem[0], "stem.0")
    x = _layer_norm_nchw(g, x, net.stem[1], "stem.1")
    size = INPUT_SIZE // 4
    for i, stage in enumerate(net.stages):
        if stage.downsample is not None:
            x = _layer_norm_nchw(g, x, stage.downsample[0], f"stages.{i}.downsample.0")
            x = _conv(g, x, stage.downsample[1], f"stages.{i}.downsample.1")
            size = (size - 2) // 2 + 1
        if size < 1:
            raise ModelError(f"a {INPUT_SIZE}x{INPUT_SIZE} input shrinks to nothing by stage {i}")
        for j, block in enumerate(stage.blocks):
            name = f"stages.{i}.blocks.{j}"
            if isinstance(block, ConvEncoder):
                x = _conv_encoder_op(g, x, block, name)
            else:
                x = _sdta_op(g, x, block, (size, size), name)
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x], "head.pool")], "head.flat", axis=1)
    return _linear_op(g, _layer_norm(g, x, net.head_norm, "head.norm"), net.head_fc, "head.fc")


def build_onnx(net: EdgeFaceNet, metadata: dict[str, str] | None = None) -> Any:
    """The ONNX model (opset 17) of ``net``: ``input`` (N, 3, 112, 112) float32 -> ``embedding`` (N, 512).

    ``metadata`` goes into the model's ``metadata_props``.
    """
    from onnx import TensorProto, helper

    g = _Graph()
    g.nodes.append(helper.make_node("Identity", [_body(g, net)], ["embedding"]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", net.embedding_dim])]
    graph = helper.make_graph(g.nodes, f"edgeface_{net.size}", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vigil")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model
