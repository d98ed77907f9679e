"""The EdgeFace network (timm's EdgeNeXt with a 512-d head) read from a state dict, every shape checked.

:func:`parse_edgeface` infers the architecture from the tensors and checks each one's shape against
what the architecture needs: the patch stem (4x4 conv, stride 4, LayerNorm), four stages (from the
second on, LayerNorm and a 2x2 stride-2 conv first), each a run of conv encoders (depthwise conv of
3, 5, 7, 9 pixels by stage, LayerNorm, pointwise MLP of 4x width with GELU, layer scale, residual)
ending, from the second stage on, in an SDTA block (the channels split into chunks, each but the
last through a 3x3 depthwise conv fed with the previous output; the Fourier positional encoding in
the second stage; XCA cross-covariance attention with a per-head temperature; then the MLP), and the
head (global average pool, LayerNorm, Linear to 512). A linear layer is either plain
(``<name>.weight``, ``<name>.bias``) or EdgeFace's low-rank LoRaLin (``<name>.linear1.weight`` then
``<name>.linear2.weight`` and ``<name>.linear2.bias``). Names may carry the ``model.`` prefix of
upstream's wrapper. The stage widths and depths must be one of :data:`SIZES` and every tensor must be
used, so a checkpoint of another architecture is refused with the tensor that does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ModelError

F32 = npt.NDArray[np.float32]
_HINT = "convert one of the upstream EdgeFace checkpoints (edgeface_xs_q.pt, edgeface_xxs_q.pt, ...)"


@dataclass(frozen=True)
class Size:
    """One EdgeNeXt size EdgeFace uses: stage widths and depths, attention heads."""

    name: str
    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: int


SIZES = (
    Size("xxs", (24, 48, 88, 168), (2, 2, 6, 2), 4),
    Size("xs", (32, 64, 100, 192), (3, 3, 9, 3), 4),
    Size("s", (48, 96, 160, 304), (3, 3, 9, 3), 8),
    Size("base", (80, 160, 288, 584), (3, 3, 9, 3), 8),
)
KERNEL_SIZES = (3, 5, 7, 9)
"""Depthwise kernel of the conv encoders, per stage (the same in every size)."""
SDTA_BLOCKS = (0, 1, 1, 1)
"""How many of each stage's last blocks are SDTA blocks."""
SPLIT_CONVS = (1, 1, 2, 3)
"""Depthwise convs of an SDTA block per stage (timm's ``d2_scales`` minus one)."""
POSITIONAL = (False, True, False, False)
"""Which stages' SDTA blocks add the positional encoding."""
EXPAND_RATIO = 4
EMBEDDING_DIM = 512


class _ShapeError(ValueError):
    """A tensor is missing, superfluous or of the wrong shape (message for the user)."""


@dataclass(frozen=True)
class Linear:
    """``y = x @ W.T + b``, ``W`` the product of ``factors`` (LoRaLin: ``linear2 @ linear1``).

    Attributes:
        factors: (out_i, in_i) float32 matrices, applied first to last.
        bias: (out,) float32 or None.
    """

    factors: tuple[F32, ...]
    bias: F32 | None

    @property
    def in_features(self) -> int:
        return int(self.factors[0].shape[1])

    @property
    def out_features(self) -> int:
        return int(self.factors[-1].shape[0])


@dataclass(frozen=True)
class Norm:
    """LayerNorm over channels: (C,) float32 ``weight`` and ``bias``, epsilon 1e-6."""

    weight: F32
    bias: F32


@dataclass(frozen=True)
class Conv:
    """Conv2d: ``weight`` (out, in/groups, k, k) float32, ``bias`` (out,) float32."""

    weight: F32
    bias: F32
    stride: int = 1
    groups: int = 1

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])


@dataclass(frozen=True)
class Mlp:
    """Pointwise MLP ``fc2(gelu(fc1(x)))`` and its layer scale ``gamma`` ((C,) float32 or None)."""

    fc1: Linear
    fc2: Linear
    gamma: F32 | None


@dataclass(frozen=True)
class ConvEncoder:
    """timm's ``ConvBlock``: ``x + gamma * mlp(norm(conv_dw(x)))``."""

    conv_dw: Conv
    norm: Norm
    mlp: Mlp


@dataclass(frozen=True)
class Sdta:
    """timm's ``SplitTransposeBlock``: split depthwise convs, positional encoding, XCA, then the MLP.

    Attributes:
        convs: the 3x3 depthwise convs of every chunk but the last.
        chunks: channel count of each chunk (``torch.chunk`` of the input into ``len(convs) + 1``).
        pos: the 1x1 ``token_projection`` of the positional encoding (64 in), or None.
        temperature: (heads,) float32 XCA temperature.
    """

    convs: tuple[Conv, ...]
    chunks: tuple[int, ...]
    pos: Conv | None
    norm_xca: Norm
    gamma_xca: F32 | None
    temperature: F32
    qkv: Linear
    proj: Linear
    norm: Norm
    mlp: Mlp


@dataclass(frozen=True)
class Stage:
    """An optional downsampling (LayerNorm, 2x2 stride-2 conv) and the stage's blocks."""

    downsample: tuple[Norm, Conv] | None
    blocks: tuple[ConvEncoder | Sdta, ...]


@dataclass(frozen=True)
class EdgeFaceNet:
    """The whole network, its size name (``xs``...) and how its linear layers are stored."""

    size: str
    stem: tuple[Conv, Norm]
    stages: tuple[Stage, ...]
    head_norm: Norm
    head_fc: Linear
    parameter_count: int
    rank_ratio: float | None
    """LoRaLin rank / min(in, out) of the head (EdgeFace's gamma), None for plain linear layers."""

    @property
    def embedding_dim(self) -> int:
        return self.head_fc.out_features


def _unwrapped(name: str) -> str:
    """``name`` without the ``model.`` of upstream's wrapper (and ``module.`` of a DataParallel)."""
    while name.startswith(("model.", "module.")):
        name = name.split(".", 1)[1]
    return name


class _Weights:
    """The state dict's tensors, taken one by one with their expected shapes."""

    def __init__(self, tensors: dict[str, F32]) -> None:
        self.tensors = {_unwrapped(k): v for k, v in tensors.items()}
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str, shape: tuple[int | None, ...]) -> F32:
        """The tensor ``name``, checked against ``shape`` (None: any size on that axis)."""
        value = self.tensors.get(name)
        if value is None:
            raise _ShapeError(f"tensor {name} is missing")
        if len(value.shape) != len(shape) or any(
            w is not None and w != n for w, n in zip(shape, value.shape, strict=True)
        ):
            wanted = "x".join("?" if w is None else str(w) for w in shape)
            raise _ShapeError(
                f"tensor {name} has shape {tuple(value.shape)} where the architecture needs {wanted}"
            )
        self.used.add(name)
        return value

    def count(self, prefix: str) -> int:
        """How many consecutive ``<prefix><i>.`` indices the names hold, from 0."""
        n = 0
        while any(k.startswith(f"{prefix}{n}.") for k in self.tensors):
            n += 1
        return n

    def check_all_used(self) -> None:
        left = sorted(set(self.tensors) - self.used)
        if left:
            more = f" and {len(left) - 5} more" if len(left) > 5 else ""
            raise _ShapeError(f"tensors the architecture has no place for: {', '.join(left[:5])}{more}")


def _linear(w: _Weights, name: str, in_features: int, out_features: int | None, bias: bool = True) -> Linear:
    if w.has(f"{name}.linear1.weight"):
        first = w.take(f"{name}.linear1.weight", (None, in_features))
        second = w.take(f"{name}.linear2.weight", (out_features, first.shape[0]))
        b = w.take(f"{name}.linear2.bias", (second.shape[0],)) if bias else None
        return Linear((first, second), b)
    weight = w.take(f"{name}.weight", (out_features, in_features))
    return Linear((weight,), w.take(f"{name}.bias", (weight.shape[0],)) if bias else None)


def _norm(w: _Weights, name: str, dim: int) -> Norm:
    return Norm(w.take(f"{name}.weight", (dim,)), w.take(f"{name}.bias", (dim,)))


def _gamma(w: _Weights, name: str, dim: int) -> F32 | None:
    return w.take(name, (dim,)) if w.has(name) else None


def _mlp(w: _Weights, name: str, dim: int) -> Mlp:
    fc1 = _linear(w, f"{name}.mlp.fc1", dim, EXPAND_RATIO * dim)
    fc2 = _linear(w, f"{name}.mlp.fc2", fc1.out_features, dim)
    return Mlp(fc1, fc2, _gamma(w, f"{name}.gamma", dim))


def _depthwise(w: _Weights, name: str, dim: int, kernel: int | None) -> Conv:
    weight = w.take(f"{name}.weight", (dim, 1, kernel, kernel))
    if weight.shape[-1] % 2 == 0:
        raise _ShapeError(f"depthwise conv {name} has an even kernel {weight.shape[-1]}")
    return Conv(weight, w.take(f"{name}.bias", (dim,)), groups=dim)


def _conv_encoder(w: _Weights, name: str, dim: int, kernel: int) -> ConvEncoder:
    return ConvEncoder(
        _depthwise(w, f"{name}.conv_dw", dim, kernel), _norm(w, f"{name}.norm", dim), _mlp(w, name, dim)
    )


def _chunks(dim: int, pieces: int) -> tuple[int, ...]:
    """Channel counts of ``torch.chunk`` of ``dim`` channels into ``pieces``."""
    size = math.ceil(dim / pieces)
    out = [min(size, dim - i * size) for i in range(pieces)]
    if any(n <= 0 for n in out):
        raise _ShapeError(f"{dim} channels do not split into {pieces} chunks")
    return tuple(out)


def _sdta(w: _Weights, name: str, dim: int) -> Sdta:
    count = w.count(f"{name}.convs.")
    if count == 0:
        raise _ShapeError(f"SDTA block {name} has no split convs")
    chunks = _chunks(dim, count + 1)
    convs = tuple(_depthwise(w, f"{name}.convs.{i}", chunks[0], 3) for i in range(count))
    pos = None
    if w.has(f"{name}.pos_embd.token_projection.weight"):
        weight = w.take(f"{name}.pos_embd.token_projection.weight", (dim, 64, 1, 1))
        pos = Conv(weight, w.take(f"{name}.pos_embd.token_projection.bias", (dim,)))
    temperature = w.take(f"{name}.xca.temperature", (None, 1, 1))
    heads = temperature.shape[0]
    if heads == 0 or dim % heads:
        raise _ShapeError(f"{dim} channels do not divide into {heads} attention heads ({name})")
    return Sdta(
        convs=convs,
        chunks=chunks,
        pos=pos,
        norm_xca=_norm(w, f"{name}.norm_xca", dim),
        gamma_xca=_gamma(w, f"{name}.gamma_xca", dim),
        temperature=temperature.reshape(heads),
        qkv=_linear(w, f"{name}.xca.qkv", dim, 3 * dim),
        proj=_linear(w, f"{name}.xca.proj", dim, dim),
        norm=_norm(w, f"{name}.norm", dim),
        mlp=_mlp(w, name, dim),
    )


def _stage(w: _Weights, i: int, in_dim: int) -> tuple[Stage, int]:
    name = f"stages.{i}"
    downsample = None
    dim = in_dim
    if i > 0:
        norm = _norm(w, f"{name}.downsample.0", in_dim)
        weight = w.take(f"{name}.downsample.1.weight", (None, in_dim, 2, 2))
        dim = int(weight.shape[0])
        downsample = (norm, Conv(weight, w.take(f"{name}.downsample.1.bias", (dim,)), stride=2))
    blocks: list[ConvEncoder | Sdta] = []
    for j in range(w.count(f"{name}.blocks.")):
        block = f"{name}.blocks.{j}"
        if w.has(f"{block}.conv_dw.weight"):
            blocks.append(_conv_encoder(w, block, dim, KERNEL_SIZES[i]))
        elif w.has(f"{block}.xca.temperature"):
            blocks.append(_sdta(w, block, dim))
        else:
            raise _ShapeError(f"block {block} is neither a conv encoder nor an SDTA block")
    if not blocks:
        raise _ShapeError(f"stage {i} has no blocks")
    return Stage(downsample, tuple(blocks)), dim


def _rank_ratio(fc: Linear) -> float | None:
    if len(fc.factors) == 1:
        return None
    return float(fc.factors[0].shape[0] / min(fc.in_features, fc.out_features))


def _parse(w: _Weights) -> EdgeFaceNet:
    if not w.has("stem.0.weight"):
        raise _ShapeError("there is no stem.0.weight: this is not an EdgeNeXt state dict")
    stem_w = w.take("stem.0.weight", (None, 3, 4, 4))
    dim = int(stem_w.shape[0])
    stem = (Conv(stem_w, w.take("stem.0.bias", (dim,)), stride=4), _norm(w, "stem.1", dim))
    count = w.count("stages.")
    if count != len(KERNEL_SIZES):
        raise _ShapeError(f"the network has {count} stages where EdgeNeXt has {len(KERNEL_SIZES)}")
    stages, dims = [], []
    for i in range(count):
        stage, dim = _stage(w, i, dim)
        stages.append(stage)
        dims.append(dim)
    size = _size(tuple(dims), tuple(len(s.blocks) for s in stages))
    for i, stage in enumerate(stages):
        _check_blocks(i, stage, size)
    head_norm = _norm(w, "head.norm", dim)
    head_fc = _linear(w, "head.fc", dim, EMBEDDING_DIM)
    w.check_all_used()
    params = sum(w.tensors[k].size for k in w.used)
    return EdgeFaceNet(size.name, stem, tuple(stages), head_norm, head_fc, int(params), _rank_ratio(head_fc))


def _size(dims: tuple[int, ...], depths: tuple[int, ...]) -> Size:
    for size in SIZES:
        if (size.dims, size.depths) == (dims, depths):
            return size
    known = ", ".join(f"{s.name} {s.dims}/{s.depths}" for s in SIZES)
    raise _ShapeError(f"stage widths {dims} and depths {depths} are none of EdgeFace's sizes ({known})")


def _check_blocks(i: int, stage: Stage, size: Size) -> None:
    """The stage's blocks are the conv encoders and SDTA blocks of EdgeNeXt's stage ``i``."""
    for j, block in enumerate(stage.blocks):
        name = f"stages.{i}.blocks.{j}"
        sdta = j >= len(stage.blocks) - SDTA_BLOCKS[i]
        if sdta != isinstance(block, Sdta):
            wanted = "an SDTA block" if sdta else "a conv encoder"
            raise _ShapeError(f"{name} is {'an SDTA block' if not sdta else 'a conv encoder'}, not {wanted}")
        if not isinstance(block, Sdta):
            continue
        if len(block.convs) != SPLIT_CONVS[i]:
            raise _ShapeError(
                f"{name} has {len(block.convs)} split convs where EdgeNeXt has {SPLIT_CONVS[i]}"
            )
        if (block.pos is not None) != POSITIONAL[i]:
            raise _ShapeError(f"{name} {'has' if block.pos is not None else 'lacks'} a positional encoding")
        if len(block.temperature) != size.heads:
            raise _ShapeError(
                f"{name} has {len(block.temperature)} attention heads where {size.name} has {size.heads}"
            )


def parse_edgeface(tensors: dict[str, F32]) -> EdgeFaceNet:
    """The EdgeFace network held by the state dict ``tensors`` (float32 arrays by PyTorch name).

    Raises:
        ModelError: a tensor is missing, left over or of a shape the architecture does not take,
            or the stage widths and depths are not one of EdgeFace's sizes.
    """
    try:
        return _parse(_Weights(tensors))
    except _ShapeError as exc:
        raise ModelError(f"the checkpoint is not an EdgeFace network: {exc}", hint=_HINT) from None
