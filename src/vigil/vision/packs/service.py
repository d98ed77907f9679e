"""Model pack services: list, install and remove, audited. The CLI (`vigil models`) and the API call these.

>>> install_pack(app, "edgeface-xs", "cli:alice", from_dir=Path("/media/usb/models"))  # doctest: +SKIP
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from vigil.core.errors import ConflictError, NotFoundError
from vigil.storage import audit
from vigil.vision.packs.active import PackContext, active_pack
from vigil.vision.packs.catalog import PACKS, PackFile, get_pack
from vigil.vision.packs.resolve import is_installed, resolve_pack
from vigil.vision.packs.store import (
    FileSource,
    Progress,
    delete_files,
    install_files,
    pack_dir,
    read_manifest,
)

_BUILTIN = {
    "dlib": "dlib comes with vigil's Python packages; switch to another pack with `vigil models use`",
    "custom": "the custom pack is your own files: unset VIGIL_DETECTOR, VIGIL_EMBEDDER and VIGIL_ONNX_*",
}


class PackStatus(BaseModel):
    """A pack as `vigil models list` shows it."""

    name: str
    title: str
    detector: str
    embedder: str
    card_id: str | None
    licences: list[str]
    source: str
    size_bytes: int | None
    """The upstream files' total size; None for packs with nothing to download (dlib, custom)."""
    files: list[PackFile]
    installed: bool
    active: bool
    """The catalog's active pack (`vigil models use`)."""
    in_use: bool
    """The pack this process uses (``VIGIL_MODEL_PACK``, custom settings, the active one or first use)."""
    installed_at: datetime | None = None
    path: str | None = None
    accuracy: dict[str, str]
    caveat: str | None
    notes: str


def pack_status(
    app: PackContext, name: str, *, active: str | None = None, in_use: str | None = None
) -> PackStatus:
    pack = get_pack(name)
    manifest = read_manifest(app.settings, name) if not pack.builtin else None
    return PackStatus(
        name=pack.name,
        title=pack.title,
        detector=pack.detector,
        embedder=pack.embedder,
        card_id=pack.card_id,
        licences=list(pack.licences),
        source=pack.source,
        size_bytes=pack.size_bytes or None,
        files=list(pack.files),
        installed=is_installed(app.settings, name),
        active=active == name,
        in_use=in_use == name,
        installed_at=manifest.installed_at if manifest else None,
        path=str(pack_dir(app.settings, name)) if manifest else None,
        accuracy=dict(pack.accuracy),
        caveat=pack.caveat,
        notes=pack.notes,
    )


def list_packs(app: PackContext) -> list[PackStatus]:
    """Every pack vigil knows, with its installed state; resolving what is in use has no side effects."""
    active, in_use = active_pack(app), resolve_pack(app, decide=False)
    return [pack_status(app, name, active=active, in_use=in_use) for name in PACKS]


def _source(app: PackContext, from_dir: Path | None, connect_timeout_s: float | None) -> FileSource:
    s = app.settings
    folder = from_dir if from_dir is not None else s.model_source_dir
    if folder is not None and not Path(folder).is_dir():
        raise NotFoundError(f"{folder} is not a folder", hint="name the folder that holds the pack's files")
    return FileSource(
        folder=Path(folder) if folder is not None else None,
        mirror_url=s.model_mirror_url,
        connect_timeout_s=connect_timeout_s or min(10.0, s.model_download_timeout_s),
        read_timeout_s=s.model_download_timeout_s,
    )


def install_pack(
    app: PackContext,
    name: str,
    actor: str,
    *,
    from_dir: Path | None = None,
    progress: Progress | None = None,
    connect_timeout_s: float | None = None,
) -> PackStatus:
    """Install the pack ``name`` into ``<models dir>/packs/<name>/`` and audit it (``model_install``).

    Files come from ``from_dir``, else ``VIGIL_MODEL_SOURCE_DIR``, else a download from
    ``VIGIL_MODEL_MIRROR_URL`` or the upstream URLs. A file whose SHA-256 is not the pinned one is a
    ModelError and nothing is installed. An installed pack is left as it is; dlib is always installed.
    """
    pack = get_pack(name)
    if pack.name == "custom":
        raise ConflictError(
            "the custom pack is your own model files; vigil does not install them",
            hint="set VIGIL_DETECTOR, VIGIL_EMBEDDER and VIGIL_ONNX_* (docs/models.md)",
        )
    if pack.builtin or read_manifest(app.settings, name) is not None:
        return pack_status(app, name)
    source = _source(app, from_dir, connect_timeout_s)
    manifest = install_files(app.settings, name, source, progress)
    audit.record(
        app,
        actor,
        "model_install",
        target_type="model_pack",
        target_name=name,
        source=manifest.source,
        files={k: v.sha256 for k, v in manifest.files.items()},
        licences=list(pack.licences),
    )
    return pack_status(app, name)


def remove_pack(app: PackContext, name: str, actor: str) -> PackStatus:
    """Delete an installed pack's folder and audit it (``model_remove``).

    Refused (ConflictError) for dlib and custom, for the catalog's active pack and for the pack
    ``VIGIL_MODEL_PACK`` names; NotFoundError when it is not installed.
    """
    pack = get_pack(name)
    if pack.builtin:
        raise ConflictError(
            f"the {name} pack is not an installed pack and cannot be removed", hint=_BUILTIN[name]
        )
    if name == active_pack(app):
        raise ConflictError(
            f"{name} is the active model pack",
            hint="switch to another first (`vigil models use dlib`, for example), then remove it",
        )
    if name == app.settings.model_pack:
        raise ConflictError(f"VIGIL_MODEL_PACK names {name}", hint="unset VIGIL_MODEL_PACK first")
    if read_manifest(app.settings, name) is None and not pack_dir(app.settings, name).exists():
        raise NotFoundError(f"the model pack {name!r} is not installed")
    delete_files(app.settings, name)
    audit.record(app, actor, "model_remove", target_type="model_pack", target_name=name)
    return pack_status(app, name)
