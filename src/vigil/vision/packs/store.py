"""Installed packs on disk: ``<models dir>/packs/<name>/``, fetched, verified, converted, with a manifest.

Install order: every upstream file is fetched into a hidden staging folder beside the packs (from a
folder, or streamed over HTTP with a size cap and a timeout), its SHA-256 checked against the pin, the
``.pt`` checkpoint converted to ONNX, the manifest written last, and only then the staging folder
renamed to the pack's folder. A pack folder without a valid manifest is not installed, so a killed or
failed install is never taken for a working one. Failures are :class:`ModelError`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from vigil import __version__
from vigil.core.config import Settings
from vigil.core.errors import ConfigError, ModelError
from vigil.vision.packs.catalog import Pack, PackFile, get_pack

MANIFEST = "installed.json"
CHUNK_BYTES = 1 << 16

Progress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)`` over all the files of a pack."""


class InstalledFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    """Relative to the pack's folder."""
    sha256: str
    size_bytes: int


class Manifest(BaseModel):
    """What an installed pack holds; written last, so its presence means the install completed."""

    model_config = ConfigDict(extra="forbid")
    pack: str
    files: dict[str, InstalledFile]
    """Upstream files by name, then ``detector.onnx`` and ``embedder.onnx``: the graphs vigil runs."""
    source: str
    installed_at: datetime
    vigil_version: str


@dataclass(frozen=True)
class FileSource:
    """Where an install takes the upstream files from: a folder, else a mirror, else the upstream URLs."""

    folder: Path | None = None
    mirror_url: str | None = None
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def describe(self) -> str:
        if self.folder is not None:
            return f"folder {self.folder}"
        return f"mirror {self.mirror_url}" if self.mirror_url else "upstream URLs"


def packs_dir(settings: Settings) -> Path:
    return settings.models_dir / "packs"


def pack_dir(settings: Settings, name: str) -> Path:
    return packs_dir(settings) / name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(settings: Settings, name: str) -> Manifest | None:
    """The manifest of an installed pack whose files are all present (by size); None otherwise."""
    folder = pack_dir(settings, name)
    try:
        manifest = Manifest.model_validate_json((folder / MANIFEST).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None
    for entry in manifest.files.values():
        path = folder / entry.path
        if not path.is_file() or path.stat().st_size != entry.size_bytes:
            return None
    return manifest


def installed_path(settings: Settings, name: str, key: str) -> Path:
    """The checked file ``key`` (``detector.onnx``, ``embedder.onnx``) of an installed pack.

    Raises ConfigError (with the install command) when the pack is not installed, ModelError when the
    file's SHA-256 is not the one recorded at install.
    """
    manifest = read_manifest(settings, name)
    if manifest is None or key not in manifest.files:
        raise ConfigError(
            f"the model pack {name!r} is not installed (in {pack_dir(settings, name)})",
            hint=f"vigil models install {name}   (offline: vigil models install {name} --from DIR)",
        )
    entry = manifest.files[key]
    path = pack_dir(settings, name) / entry.path
    if sha256_file(path) != entry.sha256:
        raise ModelError(
            f"{path} has changed since the pack {name!r} was installed",
            hint=f"install it again: vigil models remove {name}, then vigil models install {name}",
        )
    return path


# -- fetching -------------------------------------------------------------------------------------
def _chunks_from_folder(folder: Path, pf: PackFile) -> Generator[bytes]:
    path = folder / pf.name
    if not path.is_file():
        raise ModelError(
            f"{pf.name} is not in {folder}",
            hint=f"copy it there first; its upstream is {pf.url} (sha256 {pf.sha256})",
        )
    with path.open("rb") as f:
        yield from iter(lambda: f.read(CHUNK_BYTES), b"")


def file_url(pf: PackFile, mirror_url: str | None) -> str:
    """The mirror's ``<base>/<file name>``, else the upstream URL."""
    return f"{mirror_url.rstrip('/')}/{quote(pf.name)}" if mirror_url else pf.url


def _chunks_from_http(url: str, pf: PackFile, source: FileSource) -> Generator[bytes]:
    import httpx

    timeout = httpx.Timeout(source.read_timeout_s, connect=source.connect_timeout_s)
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ModelError(f"{url} answered HTTP {response.status_code}", hint=_offline_hint(pf))
            declared = response.headers.get("content-length")
            plain = "content-encoding" not in response.headers
            if plain and declared is not None and declared.isdigit() and int(declared) > pf.size_bytes:
                raise ModelError(
                    f"{url} offers {int(declared):,} bytes for {pf.name}, the pinned file has "
                    f"{pf.size_bytes:,}: refused",
                    hint=_offline_hint(pf),
                )
            yield from response.iter_bytes(CHUNK_BYTES)
    except httpx.HTTPError as exc:
        raise ModelError(f"could not download {pf.name} from {url}: {exc}", hint=_offline_hint(pf)) from exc


def _offline_hint(pf: PackFile) -> str:
    return (
        f"without network, fetch {pf.name} (sha256 {pf.sha256}) from {pf.url} elsewhere and run "
        "`vigil models install NAME --from DIR`, or set VIGIL_MODEL_MIRROR_URL / VIGIL_MODEL_SOURCE_DIR"
    )


def _write_verified(
    chunks: Iterator[bytes], dest: Path, pf: PackFile, where: str, tick: Callable[[int], None]
) -> None:
    """Stream ``chunks`` into ``dest``, at most the pinned size, then check the SHA-256 (ModelError)."""
    digest = hashlib.sha256()
    written = 0
    with dest.open("wb") as f:
        for chunk in chunks:
            written += len(chunk)
            if written > pf.size_bytes:
                raise ModelError(
                    f"{pf.name} from {where} is larger than the pinned {pf.size_bytes:,} bytes: refused",
                    hint=_offline_hint(pf),
                )
            digest.update(chunk)
            f.write(chunk)
            tick(len(chunk))
    actual = digest.hexdigest()
    if written != pf.size_bytes or actual != pf.sha256:
        raise ModelError(
            f"{pf.name} from {where} has SHA-256 {actual} ({written:,} bytes); the pinned file has "
            f"{pf.sha256} ({pf.size_bytes:,} bytes): refused, nothing installed",
            hint=f"the file is damaged or not the pinned release; get it again from {pf.url}",
        )


def fetch_files(pack: Pack, dest: Path, source: FileSource, progress: Progress | None = None) -> None:
    """Every upstream file of ``pack`` into ``dest`` (an existing folder), each checked against its pin."""
    total = pack.size_bytes
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for pf in pack.files:
        if source.folder is not None:
            where = str(source.folder / pf.name)
            chunks = _chunks_from_folder(source.folder, pf)
        else:
            where = file_url(pf, source.mirror_url)
            chunks = _chunks_from_http(where, pf, source)
        try:
            _write_verified(chunks, dest / pf.name, pf, where, tick)
        finally:
            chunks.close()  # a refused download closes its connection now


# -- converting and committing --------------------------------------------------------------------
def _convert_embedder(checkpoint: Path, out_dir: Path) -> Path:
    """The ONNX graph of an EdgeFace checkpoint, made by vigil's converter into ``out_dir``."""
    try:  # the converter teammate's module (issue 13); a plain import once it has landed
        ensure_onnx = importlib.import_module("vigil.vision.edgeface.convert").ensure_onnx
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("vigil.vision.edgeface"):
            raise
        raise ModelError(
            "this vigil has no EdgeFace converter (vigil.vision.edgeface)",
            hint="update vigil; the converter turns the .pt checkpoint into ONNX at install",
        ) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx = Path(ensure_onnx(checkpoint, out_dir))
    if not onnx.resolve().is_relative_to(out_dir.resolve()):
        onnx = Path(shutil.copy2(onnx, out_dir / onnx.name))
    return onnx


def _entry(folder: Path, path: Path) -> InstalledFile:
    return InstalledFile(
        path=path.relative_to(folder).as_posix(), sha256=sha256_file(path), size_bytes=path.stat().st_size
    )


def _build(pack: Pack, staging: Path, source: FileSource, progress: Progress | None) -> Manifest:
    fetch_files(pack, staging, source, progress)
    detector = staging / pack.file("detector").name
    embedder = _convert_embedder(staging / pack.file("embedder").name, staging / "onnx")
    files = {pf.name: _entry(staging, staging / pf.name) for pf in pack.files}
    files["detector.onnx"] = _entry(staging, detector)
    files["embedder.onnx"] = _entry(staging, embedder)
    manifest = Manifest(
        pack=pack.name,
        files=files,
        source=source.describe(),
        installed_at=datetime.now(UTC),
        vigil_version=__version__,
    )
    (staging / MANIFEST).write_text(manifest.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return manifest


def install_files(
    settings: Settings, name: str, source: FileSource, progress: Progress | None = None
) -> Manifest:
    """Fetch, verify and convert the pack ``name`` into its folder; ModelError leaves nothing behind."""
    pack = get_pack(name)
    root = packs_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-installing-", dir=root))
    try:
        manifest = _build(pack, staging, source, progress)
        _commit(staging, pack_dir(settings, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _commit(staging: Path, final: Path) -> None:
    """Put the complete ``staging`` folder in ``final``'s place (a rename; an old copy is moved aside)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}-old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    try:
        staging.rename(final)
    except OSError as exc:
        if old is not None:
            old.rename(final)
        raise ModelError(f"could not put the pack in {final}: {exc}") from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def delete_files(settings: Settings, name: str) -> None:
    """Remove an installed pack's folder (its manifest first, so a half-deleted pack is not installed)."""
    folder = pack_dir(settings, name)
    (folder / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
