"""The EdgeFace converter on the upstream checkpoints: the graph against the upstream ONNX export on real
faces, the float and LoRaLin layouts, the allow-listed unpickler against crafted files, and the cache."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from vigil.core.errors import ModelError
from vigil.vision.edgeface import checkpoint, convert
from vigil.vision.edgeface.checkpoint import read_state_dict, write_state_dict
from vigil.vision.edgeface.convert import ConversionInfo, convert_checkpoint, ensure_onnx
from vigil.vision.onnx import create_session, sha256_file
from vigil.vision.onnx.arcface import align_arcface
from vigil.vision.onnx.yunet import YuNetDetector

F32 = npt.NDArray[np.float32]
XS, XXS = "edgeface_xs_q.pt", "edgeface_xxs_q.pt"
REFERENCE = "edgeface_xs_q_reference.onnx"
LFW_IDENTITIES = (
    "Alvaro_Uribe",
    "Amelie_Mauresmo",
    "Andy_Roddick",
    "Angelina_Jolie",
    "Ann_Veneman",
    "Bill_Frist",
)
PHOTOS_PER_IDENTITY = 4


def unit(y: F32) -> F32:
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def embed(model: Path, x: F32) -> F32:
    session = create_session(model, threads=2)
    out: F32 = session.run(["embedding"], {"input": x})[0]
    return out


@pytest.fixture(scope="module")
def faces(shared_models: Path, shared_data: Path) -> tuple[F32, list[str]]:
    """(N, 3, 112, 112) float32 aligned faces, (x/255 - 0.5)/0.5 RGB, and who each one is."""
    detector = YuNetDetector.load(shared_models / "face_detection_yunet_2023mar.onnx", threads=2)
    photos = [
        (name, path)
        for name in LFW_IDENTITIES
        for path in sorted((shared_data / "lfw-dev" / name).glob("*.jpg"))[:PHOTOS_PER_IDENTITY]
    ]
    photos += [(f"people/{p.stem}", p) for p in sorted((shared_data / "people").glob("*.jpg"))]
    chips, ids = [], []
    for name, path in photos:
        bgr = cv2.imread(str(path))
        found = detector.detect(bgr)
        if len(found.score) and found.landmarks is not None:
            chips.append(align_arcface(bgr, found.landmarks[0]))
            ids.append(name)
    rgb = np.stack(chips)[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2)), ids


@pytest.fixture(scope="module")
def converted(
    shared_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, ConversionInfo]]:
    out = tmp_path_factory.mktemp("edgeface")
    return {
        name: (out / f"{name}.onnx", convert_checkpoint(shared_models / name, out / f"{name}.onnx"))
        for name in (XS, XXS)
    }


# -- the real checkpoints ---------------------------------------------------------------------------------


def test_xs_matches_the_upstream_export(
    converted: dict[str, tuple[Path, ConversionInfo]], faces: tuple[F32, list[str]], shared_models: Path
) -> None:
    x, _ = faces
    assert len(x) >= 20
    path, info = converted[XS]
    ours, theirs = embed(path, x), embed(shared_models / REFERENCE, x)
    cosine = (unit(ours) * unit(theirs)).sum(axis=1)
    print(f"XS vs reference, {len(x)} faces: min cosine {cosine.min():.7f}, median {np.median(cosine):.7f}")
    assert cosine.min() >= 0.999
    assert info.variant == "edgeface_xs_q"
    assert info.source_sha256 == "a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6"
    assert info.onnx_sha256 == sha256_file(path)
    assert (info.embedding_dim, info.parameter_count) == (512, 2_242_620)  # the reference's weight count


def test_dequantised_weights_equal_the_reference_initialisers(shared_models: Path) -> None:
    import onnx
    from onnx import numpy_helper

    ours = read_state_dict(shared_models / XS)
    reference = [
        numpy_helper.to_array(i) for i in onnx.load(str(shared_models / REFERENCE)).graph.initializer
    ]
    by_shape: dict[tuple[int, ...], list[F32]] = {}
    for r in reference:
        by_shape.setdefault(r.shape, []).append(r)
    for name, w in ours.items():
        if name.endswith(".weight") and w.ndim == 2:  # the int8 layers (MatMul: transposed; Gemm: as is)
            candidates = by_shape.get(w.shape, []) + by_shape.get(w.T.shape, [])
            assert any(np.array_equal(w, r) or np.array_equal(w.T, r) for r in candidates), name


def test_xxs_separates_genuine_from_impostor_pairs(
    converted: dict[str, tuple[Path, ConversionInfo]], faces: tuple[F32, list[str]]
) -> None:
    x, ids = faces
    path, info = converted[XXS]
    assert (info.variant, info.embedding_dim) == ("edgeface_xxs_q", 512)
    y = embed(path, x)
    assert y.shape == (len(x), 512) and np.isfinite(y).all()
    assert (np.linalg.norm(y, axis=1) > 1e-3).all()
    lfw = np.array([not i.startswith("people/") for i in ids])
    e, who = unit(y[lfw]), np.array(ids)[lfw]
    assert len(set(who)) >= 5
    sim = e @ e.T
    same = who[:, None] == who[None, :]
    upper = np.triu(np.ones_like(same), 1)
    genuine, impostor = sim[same & upper], sim[~same & upper]
    print(f"XXS: genuine mean {genuine.mean():.3f} (min {genuine.min():.3f}), impostor {impostor.mean():.3f}")
    assert np.median(genuine) > np.quantile(impostor, 0.95)
    assert genuine.mean() - impostor.mean() > 0.3


# -- the float and low-rank layouts -----------------------------------------------------------------------


def low_rank(tensors: dict[str, F32], ratio: float | None) -> dict[str, F32]:
    """Each linear layer as upstream's LoRaLin (``linear1``, ``linear2``) from an SVD of its weight.

    ``ratio`` None keeps the full rank (the same function); else rank ``max(2, int(min(in, out) * ratio))``.
    """
    linears = {k.removesuffix(".weight") for k, w in tensors.items() if k.endswith(".weight") and w.ndim == 2}
    out: dict[str, F32] = {}
    for name, w in tensors.items():
        layer, _, kind = name.rpartition(".")
        if layer not in linears:
            out[name] = w
        elif kind == "bias":
            out[f"{layer}.linear2.bias"] = w
        else:
            u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
            r = len(s) if ratio is None else max(2, int(min(w.shape) * ratio))
            root = np.sqrt(s[:r])
            out[f"{layer}.linear1.weight"] = (root[:, None] * vt[:r]).astype(np.float32)
            out[f"{layer}.linear2.weight"] = (u[:, :r] * root).astype(np.float32)
    return out


@pytest.mark.parametrize(
    ("layout", "variant", "same_function"),
    [
        ("float", "edgeface_xs", True),
        ("loralin", "edgeface_xs_gamma_10", True),
        ("gamma06", "edgeface_xs_gamma_06", False),
    ],
)
def test_float_checkpoints_convert(
    layout: str,
    variant: str,
    same_function: bool,
    converted: dict[str, tuple[Path, ConversionInfo]],
    faces: tuple[F32, list[str]],
    shared_models: Path,
    tmp_path: Path,
) -> None:
    """A float ``.pt`` of the dequantised XS weights (plain, or LoRaLin as in the gamma checkpoints)."""
    tensors = read_state_dict(shared_models / XS)
    if layout != "float":
        tensors = low_rank(tensors, None if layout == "loralin" else 0.6)
    source = tmp_path / "edgeface_float.pt"
    write_state_dict(source, tensors, folder="edgeface_float")
    info = convert_checkpoint(source, tmp_path / "float.onnx")
    assert info.variant == variant
    x = faces[0][:8]
    ours, quantised = embed(tmp_path / "float.onnx", x), embed(converted[XS][0], x)
    cosine = (unit(ours) * unit(quantised)).sum(axis=1)
    if same_function:
        assert np.abs(ours - quantised).max() < 1e-4
        assert cosine.min() > 0.99999
    else:
        assert ours.shape == (8, 512) and np.isfinite(ours).all()


def synthetic_s(ratio: float) -> dict[str, F32]:
    """Random weights in the layout of upstream's ``edgeface_s_gamma_05.pt`` (timm's edgenext_small with
    every Linear a LoRaLin of rank ``max(2, int(min(in, out) * ratio))``), written from timm's config."""
    rng = np.random.default_rng(0)
    dims, depths, kernels, scales, heads = (48, 96, 160, 304), (3, 3, 9, 3), (3, 5, 7, 9), (2, 2, 3, 4), 8
    out: dict[str, F32] = {}

    def put(name: str, *shape: int) -> None:
        out[f"model.{name}"] = (rng.standard_normal(shape) * 0.05 + (len(shape) == 1)).astype(np.float32)

    def with_bias(name: str, *shape: int) -> None:
        put(f"{name}.weight", *shape)
        put(f"{name}.bias", shape[0])

    def linear(name: str, n_in: int, n_out: int) -> None:
        rank = max(2, int(min(n_in, n_out) * ratio))
        put(f"{name}.linear1.weight", rank, n_in)
        with_bias(f"{name}.linear2", n_out, rank)

    with_bias("stem.0", dims[0], 3, 4, 4)
    with_bias("stem.1", dims[0])
    for i, (d, depth) in enumerate(zip(dims, depths, strict=True)):
        if i:
            with_bias(f"stages.{i}.downsample.0", dims[i - 1])
            with_bias(f"stages.{i}.downsample.1", d, dims[i - 1], 2, 2)
        for j in range(depth):
            block = f"stages.{i}.blocks.{j}"
            if i == 0 or j < depth - 1:
                with_bias(f"{block}.conv_dw", d, 1, kernels[i], kernels[i])
            else:
                for n in range(scales[i] - 1):
                    with_bias(f"{block}.convs.{n}", -(-d // scales[i]), 1, 3, 3)
                if i == 1:
                    with_bias(f"{block}.pos_embd.token_projection", d, 64, 1, 1)
                with_bias(f"{block}.norm_xca", d)
                put(f"{block}.gamma_xca", d)
                put(f"{block}.xca.temperature", heads, 1, 1)
                linear(f"{block}.xca.qkv", d, 3 * d)
                linear(f"{block}.xca.proj", d, d)
            with_bias(f"{block}.norm", d)
            put(f"{block}.gamma", d)
            linear(f"{block}.mlp.fc1", d, 4 * d)
            linear(f"{block}.mlp.fc2", 4 * d, d)
    with_bias("head.norm", dims[-1])
    linear("head.fc", dims[-1], 512)
    return out


def test_the_s_gamma_05_layout_converts(tmp_path: Path) -> None:
    """EdgeFace-S (8 heads, LoRaLin 0.5) with random weights: the layout only, we lack the real file."""
    tensors = synthetic_s(0.5)
    write_state_dict(tmp_path / "edgeface_s_gamma_05.pt", tensors)
    info = convert_checkpoint(tmp_path / "edgeface_s_gamma_05.pt", tmp_path / "s.onnx")
    assert (info.variant, info.embedding_dim) == ("edgeface_s_gamma_05", 512)
    assert info.parameter_count == sum(t.size for t in tensors.values())
    y = embed(
        tmp_path / "s.onnx", np.random.default_rng(1).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    )
    assert y.shape == (2, 512) and np.isfinite(y).all()


# -- refused files ------------------------------------------------------------------------------------------


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Eval(_System):
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


def archive(data_pkl: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        for name, data in (extra or {}).items():
            zf.writestr(f"archive/{name}", data)
    return buffer.getvalue()


def small_checkpoint(tmp_path: Path) -> tuple[bytes, bytes]:
    """data.pkl and data/0 of a state dict holding one float32 tensor of shape (4,)."""
    write_state_dict(tmp_path / "small.pt", {"w": np.arange(4, dtype=np.float32)})
    with zipfile.ZipFile(tmp_path / "small.pt") as zf:
        return zf.read("archive/data.pkl"), zf.read("archive/data/0")


def tampered(old: bytes = b"", new: bytes = b"", storage: bytes | None = None) -> Callable[[Path], bytes]:
    """The small checkpoint with ``old`` replaced by ``new`` in its pickle, or its storage replaced."""

    def make(tmp_path: Path) -> bytes:
        pkl, data = small_checkpoint(tmp_path)
        if old:
            assert pkl.count(old) == 1
            pkl = pkl.replace(old, new)
        return archive(pkl, {"data/0": data if storage is None else storage})

    return make


def zip_without_pickle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/version", b"3\n")
    return buffer.getvalue()


CRAFTED: list[tuple[str, Callable[[Path], bytes], str]] = [
    (
        "os.system",
        lambda p: archive(pickle.dumps(_System(p / "marker"), protocol=2)),
        r"global (posix|os)\.system",
    ),
    (
        "eval",
        lambda p: archive(pickle.dumps(_Eval(p / "marker"), protocol=2)),
        r"global (__builtin__|builtins)\.eval",
    ),
    (
        "model",
        lambda p: archive(b"\x80\x02cbackbones.timmfr\nTimmFRWrapperV2\n)\x81."),
        r"timmfr\.TimmFRWrapperV2.*state_dict",
    ),
    (
        "build",
        lambda p: archive(b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x01\x00\x00\x00Osb."),
        r"set the state",
    ),
    ("not zip", lambda p: b"\x80\x02}q\x00.", "not a zip archive"),
    ("no data.pkl", lambda p: zip_without_pickle(), r"data\.pkl"),
    ("truncated", tampered(storage=np.arange(3, dtype=np.float32).tobytes()), r"needs 16 \(truncated\?\)"),
    ("too large", tampered(b"(K\x04t(K\x01t", b"(K\x05t(K\x01t"), "larger than its storage"),
    ("offset", tampered(b"QK\x00(", b"QK\x03("), "reaches element 6 of storage 0, which holds 4"),
    ("stride", tampered(b"(K\x04t(K\x01t", b"(K\x04t(K\x02t"), "reaches element 6"),
    ("garbage", lambda p: archive(b"\x80\x02(K\x01"), "not a valid pickle"),
]


@pytest.mark.parametrize(("case", "make", "message"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_files_are_refused(
    case: str, make: Callable[[Path], bytes], message: str, tmp_path: Path
) -> None:
    source = tmp_path / "crafted.pt"
    source.write_bytes(make(tmp_path))
    with pytest.raises(ModelError, match=message):
        convert_checkpoint(source, tmp_path / "out.onnx")
    assert not (tmp_path / "marker").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in (["crafted.pt"], ["crafted.pt", "small.pt"])


def test_an_oversized_entry_is_refused_before_it_is_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "MAX_TOTAL_BYTES", 1 << 16)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}.")
        zf.writestr("archive/data/0", bytes(1 << 20))  # 1 MiB of zeros, 1 KiB deflated
    with pytest.raises(ModelError, match=r"\d+ bytes uncompressed, over the 65536-byte cap"):
        read_state_dict(buffer.getvalue())


def test_per_channel_int8_is_dequantised_per_output_channel() -> None:
    """The real files are per-tensor; per-channel goes through the same stand-in (called directly)."""
    budget = checkpoint._Budget()
    q = checkpoint._Storage(
        "0", checkpoint._STORAGE_TYPES["QInt8Storage"], np.arange(-3, 3, dtype=np.int8), budget
    )
    scales = checkpoint._Tensor(np.array([0.5, 2.0]))
    zero_points = checkpoint._Tensor(np.array([1, -1], np.int64))
    params = (checkpoint._Symbol("per_channel_affine"), scales, zero_points, 0)
    out = checkpoint._rebuild_qtensor(q, 0, (2, 3), (3, 1), params, False, OrderedDict())
    np.testing.assert_array_equal(out.values, [[-2.0, -1.5, -1.0], [2.0, 4.0, 6.0]])


def edit(shared_models: Path, change: Callable[[dict[str, F32]], None]) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        tensors = read_state_dict(shared_models / XXS)
        change(tensors)
        write_state_dict(tmp_path / "edited.pt", tensors)
        return tmp_path / "edited.pt"

    return make


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.update(
                {"model.stages.2.blocks.3.conv_dw.weight": np.zeros((88, 1, 5, 5), np.float32)}
            ),
            r"blocks\.3\.conv_dw\.weight has shape \(88, 1, 5, 5\) where the architecture needs 88x1x7x7",
        ),
        (
            lambda t: t.update({"model.head.fc.weight": np.zeros((128, 168), np.float32)}),
            r"head\.fc\.weight has shape",
        ),
        (
            lambda t: t.pop("model.stages.1.blocks.1.norm.bias"),
            r"stages\.1\.blocks\.1\.norm\.bias is missing",
        ),
        (lambda t: t.update({"model.extra.weight": np.zeros(3, np.float32)}), r"no place for: extra\.weight"),
        (
            lambda t: [t.pop(k) for k in list(t) if k.startswith("model.stages.3.blocks.1.")],
            "none of EdgeFace's sizes",
        ),
        (
            lambda t: t.clear() or t.update({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}),
            "not an EdgeNeXt",
        ),
    ],
    ids=["kernel", "head", "missing", "extra", "depth", "resnet"],
)
def test_other_architectures_are_refused(
    change: Callable[[dict[str, F32]], None], message: str, shared_models: Path, tmp_path: Path
) -> None:
    source = edit(shared_models, change)(tmp_path)
    with pytest.raises(ModelError, match=message):
        convert_checkpoint(source, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


# -- the cache --------------------------------------------------------------------------------


def test_ensure_onnx_converts_once_and_replaces_a_damaged_copy(
    shared_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = convert.convert_checkpoint

    def counting(src: Path, dst: Path) -> ConversionInfo:
        calls.append(src)
        return real(src, dst)

    monkeypatch.setattr(convert, "convert_checkpoint", counting)
    cache = tmp_path / "cache"
    first = ensure_onnx(shared_models / XXS, cache)
    assert first.name == "edgeface-46be7cc7e8d6e235-c1.onnx"
    assert ensure_onnx(shared_models / XXS, cache) == first and len(calls) == 1
    manifest = json.loads(first.with_suffix(".json").read_text())
    assert manifest["onnx_sha256"] == sha256_file(first) and manifest["variant"] == "edgeface_xxs_q"

    first.write_bytes(first.read_bytes()[:1000])  # a damaged copy
    assert ensure_onnx(shared_models / XXS, cache) == first and len(calls) == 2
    assert sha256_file(first) == manifest["onnx_sha256"]
    assert {p.name for p in cache.iterdir()} == {first.name, first.with_suffix(".json").name}


def test_ensure_onnx_converts_a_changed_source_and_leaves_nothing_on_failure(
    shared_models: Path, tmp_path: Path
) -> None:
    source, cache = tmp_path / "edgeface.pt", tmp_path / "cache"
    source.write_bytes((shared_models / XXS).read_bytes())
    old = ensure_onnx(source, cache)
    source.write_bytes((shared_models / XS).read_bytes())
    new = ensure_onnx(source, cache)
    assert new != old and new.name.startswith("edgeface-a31314377876ab9f")
    source.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError):
        ensure_onnx(source, cache)
    assert len(list(cache.iterdir())) == 4  # the two good conversions and their manifests, nothing else
