"""Read a PyTorch ``.pt`` state dict into numpy arrays without PyTorch and without running its code.

A ``.pt`` file (PyTorch's zip serialisation, torch >= 1.6) is a zip archive with one folder holding
``data.pkl``, a pickled ``OrderedDict`` of tensors, and ``data/<key>``, the raw little-endian
storages the tensors view. Unpickling runs whatever callables the pickle names, so
:class:`_Unpickler` resolves only an explicit allow-list of globals (:data:`ALLOWED_GLOBALS`), each
mapped to a small stand-in of ours: storage types become :class:`_StorageType`, dtypes and quantisation
schemes become :class:`_Symbol`, and ``torch._utils._rebuild_*`` become functions that slice a
bounds-checked numpy view of the storage. Any other global (``os.system``, ``builtins.eval``, a
model class) raises :class:`ModelError` naming it, before anything is called.

Dynamically quantised ``Linear`` layers (``torch.ao.nn.quantized.dynamic.Linear``) store
``<layer>._packed_params._packed_params`` = (int8 weight, float bias) plus bookkeeping
(``<layer>.scale``, ``<layer>.zero_point``, ``<layer>._packed_params.dtype``);
:func:`read_state_dict` returns them as ``<layer>.weight`` (dequantised, ``(q - zero_point) * scale``
per tensor or per output channel) and ``<layer>.bias``, so both layouts read the same.

:func:`write_state_dict` writes the same format (protocol-2 opcodes, as ``torch.save`` does) for float
tensors; tests use it to build checkpoints that PyTorch would load.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ModelError

F32 = npt.NDArray[np.float32]

MAX_TOTAL_BYTES = 512 << 20
"""Cap on the uncompressed size of the archive's entries together (and of the file itself)."""
MAX_PICKLE_BYTES = 64 << 20
"""Cap on ``data.pkl``: a state dict's pickle is a few hundred kilobytes."""
MAX_ENTRIES = 100_000
_MAX_DIMS = 8


def _cap(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes}-byte"


_KEY = re.compile(r"[0-9A-Za-z_]{1,64}")
_HINT = "use the upstream EdgeFace checkpoint (a state dict saved by torch.save); download it again"


class _CheckpointError(ValueError):
    """The archive or its pickle does not follow the state-dict format (message for the user)."""


def _no_state(self: object, state: object) -> None:
    """``__setstate__`` of the stand-ins: the pickle's BUILD opcode must not alter them."""
    raise _CheckpointError(f"the pickle tries to set the state of {type(self).__name__} (BUILD)")


@dataclass(frozen=True, slots=True)
class _Symbol:
    """Stand-in for a torch dtype (``torch.qint8``) or quantisation scheme (``torch.per_tensor_affine``)."""

    name: str
    __setstate__ = _no_state


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for a typed storage class (``torch.FloatStorage``): its element type."""

    name: str
    dtype: str
    """numpy dtype of the elements, without byte order: ``f4``, ``i1``..."""
    quantised: bool = False
    __setstate__ = _no_state


@dataclass
class _Budget:
    """Bytes that the tensors rebuilt from one pickle may still take (views may share storages)."""

    left: int = field(default_factory=lambda: 2 * MAX_TOTAL_BYTES)

    def charge(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise _CheckpointError(f"the tensors would take over {_cap(2 * MAX_TOTAL_BYTES)} in memory")
        self.left -= nbytes


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    kind: _StorageType
    values: npt.NDArray[Any] = field(repr=False)
    """(numel,) array of the storage's elements."""
    budget: _Budget = field(repr=False)
    __setstate__ = _no_state


@dataclass(frozen=True, slots=True)
class _Tensor:
    """A tensor rebuilt from a storage: ``values`` holds a copy, float32 once dequantised."""

    values: npt.NDArray[Any] = field(repr=False)
    quantised: bool = False
    __setstate__ = _no_state


@dataclass(frozen=True, slots=True)
class _Rebuild:
    """Stand-in for a ``torch._utils._rebuild_*`` function."""

    name: str
    function: Callable[..., _Tensor]
    __setstate__ = _no_state

    def __call__(self, *args: object) -> _Tensor:
        return self.function(*args)


_STORAGE_TYPES = {
    t.name: t
    for t in (
        _StorageType("FloatStorage", "f4"),
        _StorageType("DoubleStorage", "f8"),
        _StorageType("HalfStorage", "f2"),
        _StorageType("BFloat16Storage", "u2"),
        _StorageType("LongStorage", "i8"),
        _StorageType("IntStorage", "i4"),
        _StorageType("QInt8Storage", "i1", quantised=True),
        _StorageType("QUInt8Storage", "u1", quantised=True),
    )
}
_SYMBOLS = ("qint8", "quint8", "float16", "float32", "per_tensor_affine", "per_channel_affine")


def _int(value: object, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _CheckpointError(f"{what} is {value!r}, not an integer >= {low}")
    return value


def _ints(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > _MAX_DIMS:
        raise _CheckpointError(f"{what} is {value!r}, not a tuple of at most {_MAX_DIMS} integers")
    return tuple(_int(v, what) for v in value)


def _view(storage: object, offset: object, size: object, stride: object) -> npt.NDArray[Any]:
    """A copy of the strided view ``(offset, size, stride)`` of ``storage``, checked to lie inside it."""
    if not isinstance(storage, _Storage):
        raise _CheckpointError(f"a tensor is rebuilt from {type(storage).__name__}, not from a storage")
    first = _int(offset, "a storage offset")
    shape, steps = _ints(size, "a tensor size"), _ints(stride, "a tensor stride")
    if len(shape) != len(steps):
        raise _CheckpointError(f"size {shape} and stride {steps} differ in length")
    data, count = storage.values, math.prod(shape)
    if count > len(data):
        raise _CheckpointError(f"a tensor of size {shape} is larger than its storage {storage.key}")
    storage.budget.charge(4 * count)
    if count == 0:
        return np.zeros(shape, data.dtype)
    last = first + sum((n - 1) * s for n, s in zip(shape, steps, strict=True))
    if last >= len(data):
        raise _CheckpointError(
            f"a tensor of size {shape}, stride {steps} at offset {first} reaches element {last} "
            f"of storage {storage.key}, which holds {len(data)}"
        )
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[first:], shape=shape, strides=[s * item for s in steps], writeable=False
    )
    return np.array(view, copy=True)


def _rebuild_tensor_v2(
    storage: object, offset: object, size: object, stride: object, *_grad_hooks_metadata: object
) -> _Tensor:
    """``torch._utils._rebuild_tensor_v2``: a plain tensor viewing a storage."""
    if isinstance(storage, _Storage) and storage.kind.quantised:
        raise _CheckpointError(f"storage {storage.key} holds quantised values but is read as a plain tensor")
    return _Tensor(_view(storage, offset, size, stride))


def _rebuild_parameter(data: object, *_grad_hooks: object) -> _Tensor:
    """``torch._utils._rebuild_parameter``: a ``Parameter`` is its tensor."""
    if not isinstance(data, _Tensor):
        raise _CheckpointError(f"a parameter wraps {type(data).__name__}, not a tensor")
    return data


def _rebuild_qtensor(
    storage: object, offset: object, size: object, stride: object, params: object, *_grad_hooks: object
) -> _Tensor:
    """``torch._utils._rebuild_qtensor``: an int8 tensor, dequantised as ``(q - zero_point) * scale``."""
    if not isinstance(storage, _Storage) or not storage.kind.quantised:
        raise _CheckpointError("a quantised tensor is rebuilt from a non-quantised storage")
    q = _view(storage, offset, size, stride).astype(np.float64)
    if not isinstance(params, tuple) or not params or not isinstance(params[0], _Symbol):
        raise _CheckpointError(f"quantiser parameters {params!r} are not (scheme, ...)")
    scheme = params[0].name
    if scheme == "per_tensor_affine" and len(params) == 3:
        scale, zero_point = _scale(params[1]), _zero_point(params[2])
        values = (q - zero_point) * scale
    elif scheme == "per_channel_affine" and len(params) == 4:
        axis = _int(params[3], "the quantisation axis")
        if axis >= q.ndim:
            raise _CheckpointError(f"quantisation axis {axis} of a {q.ndim}-d tensor")
        scales, zero_points = _channel_params(params[1], params[2], q.shape[axis])
        shape = [1] * q.ndim
        shape[axis] = q.shape[axis]
        values = (q - zero_points.reshape(shape)) * scales.reshape(shape)
    else:
        raise _CheckpointError(f"unsupported quantisation scheme {scheme} with {len(params) - 1} parameters")
    return _Tensor(values.astype(np.float32), quantised=True)


def _scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int):
        raise _CheckpointError(f"quantisation scale {value!r} is not a number")
    if not math.isfinite(value) or value <= 0:
        raise _CheckpointError(f"quantisation scale {value!r} is not a positive finite number")
    return float(value)


def _zero_point(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -256 < value < 256:
        raise _CheckpointError(f"quantisation zero point {value!r} is not an 8-bit integer")
    return value


def _channel_params(
    scales: object, zero_points: object, channels: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if not isinstance(scales, _Tensor) or not isinstance(zero_points, _Tensor):
        raise _CheckpointError("per-channel scales and zero points are not tensors")
    s, z = scales.values.astype(np.float64), zero_points.values.astype(np.float64)
    if s.shape != (channels,) or z.shape != (channels,):
        raise _CheckpointError(f"per-channel parameters {s.shape}/{z.shape} for {channels} channels")
    if not (np.isfinite(s).all() and (s > 0).all() and (np.abs(z) < 256).all()):
        raise _CheckpointError("per-channel scales or zero points are out of range")
    return s, z


def _globals() -> dict[tuple[str, str], object]:
    table: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _Rebuild("_rebuild_tensor_v2", _rebuild_tensor_v2),
        ("torch._utils", "_rebuild_qtensor"): _Rebuild("_rebuild_qtensor", _rebuild_qtensor),
        ("torch._utils", "_rebuild_parameter"): _Rebuild("_rebuild_parameter", _rebuild_parameter),
    }
    table.update({("torch", name): kind for name, kind in _STORAGE_TYPES.items()})
    table.update({("torch", name): _Symbol(name) for name in _SYMBOLS})
    return table


ALLOWED_GLOBALS: Mapping[tuple[str, str], object] = _globals()
"""(module, name) of every global a state-dict pickle may name, and the stand-in it resolves to."""


class _Unpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and reads storages from the archive."""

    def __init__(self, data: bytes, read_storage: Callable[[str, int], bytes]) -> None:
        super().__init__(io.BytesIO(data))
        self._read_storage = read_storage
        self._storages: dict[str, _Storage] = {}
        self._budget = _Budget()

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise ModelError(
                f"the checkpoint's pickle asks for the Python global {module}.{name}, which a state dict "
                "of tensors never needs; vigil refuses it instead of running it",
                hint="this is not a plain state dict: convert only the upstream EdgeFace .pt files, or "
                "re-save a pickled model with torch.save(model.state_dict(), path)",
            )
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise _CheckpointError(f"unknown persistent id {pid!r:.80}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType):
            raise _CheckpointError(f"storage {key!r:.40} has type {kind!r:.40}, not a known storage type")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise _CheckpointError(f"storage key {key!r:.40} is not a plain name")
        count = _int(numel, f"the element count of storage {key}")
        cached = self._storages.get(key)
        if cached is not None:
            if cached.kind != kind or len(cached.values) != count:
                raise _CheckpointError(f"storage {key} is read with two different types or sizes")
            return cached
        dtype = np.dtype(kind.dtype).newbyteorder("<")
        raw = self._read_storage(key, count * dtype.itemsize)
        values = np.frombuffer(raw, dtype=dtype)
        if kind.name == "BFloat16Storage":  # the high half of a float32
            values = (values.astype(np.uint32) << 16).view(np.float32)
        storage = _Storage(key, kind, values, self._budget)
        self._storages[key] = storage
        return storage


@dataclass
class _Archive:
    """The zip archive of a ``.pt`` file, its folder and a byte budget for what is read from it."""

    zf: zipfile.ZipFile
    prefix: str
    budget: int = field(default_factory=lambda: MAX_TOTAL_BYTES)

    def has(self, name: str) -> bool:
        try:
            self.zf.getinfo(f"{self.prefix}/{name}")
        except KeyError:
            return False
        return True

    def read(self, name: str, size: int | None = None) -> bytes:
        path = f"{self.prefix}/{name}"
        try:
            info = self.zf.getinfo(path)
        except KeyError:
            raise _CheckpointError(f"the archive has no entry {path}") from None
        if size is not None and info.file_size != size:
            raise _CheckpointError(
                f"entry {path} holds {info.file_size} bytes where its tensor needs {size} (truncated?)"
            )
        if info.file_size > self.budget:
            raise _CheckpointError(f"entry {path} would exceed the {_cap(MAX_TOTAL_BYTES)} cap")
        self.budget -= info.file_size
        try:
            with self.zf.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            raise _CheckpointError(f"entry {path} cannot be read ({exc})") from None
        if len(data) != info.file_size:
            raise _CheckpointError(f"entry {path} is shorter or longer than its header says")
        return data


def _open_archive(source: bytes) -> _Archive:
    if len(source) > MAX_TOTAL_BYTES:
        raise _CheckpointError(f"the file is over the {_cap(MAX_TOTAL_BYTES)} cap")
    try:
        zf = zipfile.ZipFile(io.BytesIO(source))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise _CheckpointError(
            f"it is not a zip archive ({exc}); checkpoints saved by torch < 1.6 are not supported"
        ) from None
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _CheckpointError(f"the archive has {len(infos)} entries, over the cap of {MAX_ENTRIES}")
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise _CheckpointError(
            f"the archive's entries hold {total} bytes uncompressed, over the {_cap(MAX_TOTAL_BYTES)} cap"
        )
    pickles = [i.filename for i in infos if i.filename.count("/") == 1 and i.filename.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise _CheckpointError(f"the archive has {len(pickles)} <folder>/data.pkl entries, not one")
    archive = _Archive(zf, pickles[0].rsplit("/", 1)[0])
    order = archive.read("byteorder")[:16] if archive.has("byteorder") else b"little"
    if order != b"little":
        raise _CheckpointError(
            f"storages are stored in byte order {order!r}; only little-endian is supported"
        )
    return archive


def _load_pickle(archive: _Archive) -> object:
    info = archive.zf.getinfo(f"{archive.prefix}/data.pkl")
    if info.file_size > MAX_PICKLE_BYTES:
        raise _CheckpointError(f"data.pkl holds {info.file_size} bytes, over the cap of {MAX_PICKLE_BYTES}")
    data = archive.read("data.pkl")
    unpickler = _Unpickler(data, lambda key, size: archive.read(f"data/{key}", size))
    try:
        return unpickler.load()
    except (ModelError, _CheckpointError):
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise _CheckpointError(f"data.pkl is not a valid pickle ({type(exc).__name__}: {exc})") from None
    except (KeyError, RecursionError, MemoryError, OverflowError, struct.error) as exc:
        raise _CheckpointError(f"data.pkl is not a valid pickle ({type(exc).__name__})") from None


_QUANT_BOOKKEEPING = (".scale", ".zero_point", "._packed_params.dtype")


@dataclass(frozen=True)
class Checkpoint:
    """A state dict read by :func:`load_checkpoint`.

    Attributes:
        tensors: float32 arrays by PyTorch name, dequantised layers as ``<layer>.weight``/``.bias``.
        quantised_layers: names of the layers whose int8 weights were dequantised.
    """

    tensors: dict[str, F32]
    quantised_layers: frozenset[str]


def _flatten(loaded: object) -> Checkpoint:
    """The float32 arrays of a loaded state dict, packed params expanded to ``weight``/``bias``."""
    if not isinstance(loaded, dict):
        raise _CheckpointError(f"data.pkl holds a {type(loaded).__name__}, not a state dict")
    suffix = "._packed_params._packed_params"
    packed = {k.removesuffix(suffix) for k in loaded if isinstance(k, str) and k.endswith(suffix)}
    out: dict[str, F32] = {}
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise _CheckpointError(f"state dict key {key!r:.40} is not a string")
        if key.endswith(suffix):
            out.update(_unpack(key.removesuffix(suffix), value))
        elif any(key.endswith(s) and key.removesuffix(s) in packed for s in _QUANT_BOOKKEEPING):
            continue  # the output scale / zero point / dtype of a dynamic layer: unused by its float output
        elif key.endswith(".num_batches_tracked"):
            continue
        elif not isinstance(value, _Tensor) or value.values.dtype.kind != "f":
            raise _CheckpointError(f"state dict entry {key} is a {_describe(value)}, not a float tensor")
        else:
            out[key] = _finite(key, value.values)
    return Checkpoint(out, frozenset(packed))


def _unpack(layer: str, value: object) -> dict[str, F32]:
    if not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[0], _Tensor):
        raise _CheckpointError(f"{layer}'s packed parameters are a {_describe(value)}, not (weight, bias)")
    weight, bias = value
    out = {f"{layer}.weight": _finite(f"{layer}.weight", weight.values)}
    if bias is not None:
        if not isinstance(bias, _Tensor) or bias.values.dtype.kind != "f":
            raise _CheckpointError(f"{layer}'s packed bias is a {_describe(bias)}, not a float tensor")
        out[f"{layer}.bias"] = _finite(f"{layer}.bias", bias.values)
    return out


def _describe(value: object) -> str:
    if isinstance(value, _Tensor):
        return f"{value.values.dtype} tensor"
    return type(value).__name__


def _finite(key: str, values: npt.NDArray[Any]) -> F32:
    out = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(out).all():
        raise _CheckpointError(f"tensor {key} holds NaN or infinite values")
    return out


def load_checkpoint(source: Path | bytes, *, name: str | None = None) -> Checkpoint:
    """The tensors of the PyTorch state dict in ``source`` (a ``.pt`` path or its bytes), as float32.

    ``name`` says in error messages which file ``source``'s bytes came from.

    Integer tensors of dynamically quantised layers come back dequantised as ``<layer>.weight`` and
    ``<layer>.bias``; the layers' bookkeeping entries are left out. Keys keep PyTorch's names.

    Raises:
        ModelError: the file is unreadable, not a zip archive, over the size caps, truncated, names a
            global outside :data:`ALLOWED_GLOBALS`, or holds something other than float tensors.
    """
    where = name or (str(source) if isinstance(source, Path) else "the checkpoint")
    if isinstance(source, Path):
        try:
            if source.stat().st_size > MAX_TOTAL_BYTES:
                raise ModelError(f"{source} is over the {_cap(MAX_TOTAL_BYTES)} cap of a checkpoint")
            data = source.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {source}: {exc.strerror or exc}") from exc
    else:
        data = source
    try:
        archive = _open_archive(data)
        return _flatten(_load_pickle(archive))
    except _CheckpointError as exc:
        raise ModelError(f"{where} is not a readable PyTorch state dict: {exc}", hint=_HINT) from None
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{where} is a damaged zip archive: {exc}", hint=_HINT) from None
    except ModelError as exc:  # a refused global
        raise ModelError(f"{where}: {exc.message}", hint=exc.hint) from None


def read_state_dict(source: Path | bytes) -> dict[str, F32]:
    """:func:`load_checkpoint`'s tensors: a ``dict[str, ndarray]`` of float32 weights."""
    return load_checkpoint(source).tensors


# -- writing ------------------------------------------------------------------------------------------


def _op_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _op_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _op_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode("ascii")


def _tensor_pickle(key: str, shape: tuple[int, ...]) -> bytes:
    """Opcodes of ``_rebuild_tensor_v2(storage key, 0, shape, contiguous stride, False, OrderedDict())``."""
    strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    storage_type = _op_global("torch", "FloatStorage")
    persistent = _op_tuple(
        [_op_str("storage"), storage_type, _op_str(key), _op_str("cpu"), _op_int(math.prod(shape))]
    )
    args = [
        persistent + b"Q",
        _op_int(0),
        _op_tuple([_op_int(n) for n in shape]),
        _op_tuple([_op_int(s) for s in strides]),
        b"\x89",  # NEWFALSE: requires_grad
        _op_global("collections", "OrderedDict") + b")R",  # backward hooks: OrderedDict()
    ]
    return _op_global("torch._utils", "_rebuild_tensor_v2") + _op_tuple(args) + b"R"


def write_state_dict(
    path: Path, tensors: Mapping[str, npt.NDArray[np.float32]], folder: str = "archive"
) -> None:
    """Write ``tensors`` as a float32 PyTorch state dict (``torch.save`` format, protocol 2).

    Each array becomes one contiguous ``FloatStorage`` ``data/<i>``; ``torch.load`` and
    :func:`read_state_dict` read the file back.
    """
    body = [b"\x80\x02", _op_global("collections", "OrderedDict"), b")R", b"("]
    storages: list[bytes] = []
    for i, (name, array) in enumerate(tensors.items()):
        values = np.ascontiguousarray(array, dtype="<f4")
        body += [_op_str(name), _tensor_pickle(str(i), tuple(int(n) for n in values.shape))]
        storages.append(values.tobytes())
    body += [b"u", b"."]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{folder}/data.pkl", b"".join(body))
        zf.writestr(f"{folder}/byteorder", b"little")
        for i, raw in enumerate(storages):
            zf.writestr(f"{folder}/data/{i}", raw)
        zf.writestr(f"{folder}/version", b"3\n")
