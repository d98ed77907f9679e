"""Registered cameras: add, list, look up.

A file or image-folder camera must lie in one of the media folders (setting ``media_dirs``, default
``<data dir>/media``), symlinks resolved, so that whoever may add cameras cannot make the server read
any file it can (``/etc``, the catalog). Network sources and webcams are not confined.
A camera assigned to an edge device (``device``) is run there, not by the server: its file or folder
is on the device, which checks it against its own media folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.storage import audit
from vigil.storage.tables import Camera, Device
from vigil.video.resume import discard
from vigil.video.sources import LIVE_SCHEMES
from vigil.video.strangers import StrangerRule, check_rule, rule_of, store_rule

CameraKind = Literal["fixed", "ptz", "street-light", "entrance", "mobile", "body-worn", "other"]
CAMERA_KINDS: tuple[str, ...] = CameraKind.__args__  # type: ignore[attr-defined]


class CameraInfo(BaseModel):
    id: int
    name: str
    url: str
    """The address with any password masked."""
    site: str | None
    location: tuple[float, float] | None
    kind: str
    enabled: bool
    retention_days: int | None = None
    keep_sightings: bool = False
    device: str | None = None
    """The edge device that runs it (None: the server's own camera workers)."""
    strangers: StrangerRule | None = None
    """Its stranger rule (see :mod:`vigil.video.strangers`); None: no stranger alarms."""


def mask_url(url: str) -> str:
    """``url`` with a password replaced by ``***`` (for display and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def parse_location(text: str) -> tuple[float, float]:
    """``"LAT,LON"`` in decimal degrees."""
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise InputError(
            f"location {text!r} is not LAT,LON", hint="for example --location 48.8566,2.3522"
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InputError(f"location {text!r} is out of range", hint="latitude -90..90, longitude -180..180")
    return lat, lon


def _check_url(url: str) -> None:
    if url.startswith(("webcam:", "/dev/video")) or "://" not in url:
        return  # a webcam, a file or a folder: checked when opened
    scheme = urlsplit(url).scheme.lower()
    if scheme not in LIVE_SCHEMES:
        raise InputError(
            f"{mask_url(url)}: unsupported scheme {scheme!r}",
            hint="use one of " + ", ".join(s + "://" for s in LIVE_SCHEMES) + ", webcam:N or a file",
        )


def is_network_source(url: str) -> bool:
    """A stream URL or a webcam (not confined to the media folders)."""
    return "://" in url or url.startswith(("webcam:", "/dev/video"))


def check_media_path(settings: Settings, url: str) -> Path | None:
    """The resolved file or folder a camera ``url`` names, if it exists inside a media folder.

    None for network sources and webcams. Raises :class:`InputError` (a 422) for a path outside
    every media folder, or one that does not exist.
    """
    if is_network_source(url):
        return None
    folders = settings.media_folders
    shown = ", ".join(map(str, folders))
    path = Path(url).expanduser().resolve()
    if not any(path.is_relative_to(folder) for folder in folders):
        raise InputError(
            f"{url}: not inside a media folder ({shown}; setting media_dirs, VIGIL_MEDIA_DIRS)",
            hint="put the file in a media folder, or add its folder to the setting",
        )
    if not path.exists():
        raise InputError(
            f"{url}: no such file or folder (resolved to {path})",
            hint="copy the video into the media folder first",
        )
    return path


def _info(c: Camera) -> CameraInfo:
    location = (c.latitude, c.longitude) if c.latitude is not None and c.longitude is not None else None
    return CameraInfo(
        id=c.id,
        name=c.name,
        url=mask_url(c.url),
        site=c.site,
        location=location,
        kind=c.kind,
        enabled=c.enabled,
        retention_days=c.retention_days,
        keep_sightings=c.keep_sightings,
        device=_device_name(c),
        strangers=rule_of(c),
    )


def _device_name(c: Camera) -> str | None:
    s = object_session(c)
    if c.device_id is None or s is None:
        return None
    d = s.get(Device, c.device_id)
    return d.name if d is not None else None


def _device(s: Session, name: str) -> Device:
    d = s.scalar(select(Device).where(Device.name == name.strip()))
    if d is None:
        raise NotFoundError(f"no device named {name!r}", hint="see `vigil devices list`")
    return d


def add_camera(
    app: App,
    name: str,
    url: str,
    *,
    site: str | None = None,
    location: str | None = None,
    kind: str = "fixed",
    retention_days: int | None = None,
    keep_sightings: bool = False,
    enabled: bool = True,
    device: str | None = None,
    strangers: StrangerRule | None = None,
    actor: str = audit.SYSTEM,
) -> CameraInfo:
    """Register a camera (``enabled``: it runs); audited (``camera_add``, with the camera) in the same
    transaction. ``device``: the edge device that runs it (its site by default); a file or folder is
    then on that device, checked against the device's own media folders, not the server's.
    ``strangers``: its stranger rule (checked: the galleries must exist, the hours parse)."""
    name = name.strip()
    if not name:
        raise InputError("a camera needs a name")
    if kind not in CAMERA_KINDS:
        raise InputError(f"unknown camera kind {kind!r}", hint="one of " + ", ".join(CAMERA_KINDS))
    _check_url(url)
    if device is None:
        check_media_path(app.settings, url)
    if retention_days is not None and retention_days < 1:
        raise InputError("retention_days must be at least 1")
    lat_lon = parse_location(location) if location else None
    try:
        with app.db.session() as s:
            owner = _device(s, device) if device is not None else None
            if owner is not None and site is None:
                site = owner.site
            cam = Camera(
                name=name,
                url=url,
                site=site,
                latitude=lat_lon[0] if lat_lon else None,
                longitude=lat_lon[1] if lat_lon else None,
                kind=kind,
                enabled=enabled,
                retention_days=retention_days,
                keep_sightings=keep_sightings,
                device_id=owner.id if owner is not None else None,
            )
            if strangers is not None:
                store_rule(cam, check_rule(s, strangers.galleries, strangers.hours, strangers.min_quality))
            s.add(cam)
            s.flush()
            info = _info(cam)
            _audit(s, actor, "camera_add", info, camera=info.model_dump(mode="json"))
            return info
    except IntegrityError:
        raise ConflictError(f"a camera named {name!r} already exists", hint="choose another name") from None


def list_cameras(app: App) -> list[CameraInfo]:
    with app.db.session() as s:
        return [_info(c) for c in s.scalars(select(Camera).order_by(Camera.name))]


def get_camera(app: App, name: str) -> tuple[CameraInfo, str]:
    """The camera and its full URL (credentials included, for connecting)."""
    with app.db.session() as s:
        cam = s.scalar(select(Camera).where(Camera.name == name))
        if cam is None:
            raise NotFoundError(f"no camera named {name!r}", hint="see `vigil camera list`")
        return _info(cam), cam.url


def _audit(s: Session, actor: str, action: str, info: CameraInfo, **detail: object) -> None:
    audit.append(s, actor, action, target_type="camera", target_id=info.id, target_name=info.name, **detail)


def set_enabled(app: App, name: str, enabled: bool, *, actor: str = audit.SYSTEM) -> CameraInfo:
    """Whether the server runs this camera (it starts the enabled ones at start-up); audited
    (``camera_start`` or ``camera_stop``) in the same transaction."""
    with app.db.session() as s:
        cam = s.scalar(select(Camera).where(Camera.name == name))
        if cam is None:
            raise NotFoundError(f"no camera named {name!r}", hint="see `vigil camera list`")
        cam.enabled = enabled
        info = _info(cam)
        _audit(s, actor, "camera_start" if enabled else "camera_stop", info)
        return info


def delete_camera(app: App, name: str, *, actor: str = audit.SYSTEM) -> CameraInfo:
    """Forget a camera; its alarms stay (they keep the camera's name). Audited (``camera_delete``)
    in the same transaction."""
    with app.db.session() as s:
        cam = s.scalar(select(Camera).where(Camera.name == name))
        if cam is None:
            raise NotFoundError(f"no camera named {name!r}", hint="see `vigil camera list`")
        info = _info(cam)
        s.delete(cam)
        _audit(s, actor, "camera_delete", info)
    discard(app.settings, info.id)  # a file camera's position
    return info


def update_camera(
    app: App,
    name: str,
    *,
    site: str | None = None,
    kind: str | None = None,
    location: str | None = None,
    retention_days: int | None = None,
    clear_retention: bool = False,
    keep_sightings: bool | None = None,
    strangers: StrangerRule | None = None,
    clear_strangers: bool = False,
    actor: str = audit.SYSTEM,
) -> tuple[CameraInfo, CameraInfo]:
    """Change a camera's site, kind, location, retention, sightings opt-in or stranger rule
    (``strangers`` replaces it, ``clear_strangers`` turns it off); returns (before, after).
    Audited (``camera_update``, before and after) in the same transaction."""
    if kind is not None and kind not in CAMERA_KINDS:
        raise InputError(f"unknown camera kind {kind!r}", hint="one of " + ", ".join(CAMERA_KINDS))
    if retention_days is not None and retention_days < 1:
        raise InputError("retention_days must be at least 1", hint="or clear it to keep until deleted")
    lat_lon = parse_location(location) if location else None
    with app.db.session() as s:
        cam = s.scalar(select(Camera).where(Camera.name == name))
        if cam is None:
            raise NotFoundError(f"no camera named {name!r}", hint="see `vigil camera list`")
        before = _info(cam)
        if site is not None:
            cam.site = site.strip() or None
        if kind is not None:
            cam.kind = kind
        if lat_lon is not None:
            cam.latitude, cam.longitude = lat_lon
        if retention_days is not None or clear_retention:
            cam.retention_days = retention_days
        if keep_sightings is not None:
            cam.keep_sightings = keep_sightings
        if strangers is not None:
            store_rule(cam, check_rule(s, strangers.galleries, strangers.hours, strangers.min_quality))
        elif clear_strangers:
            store_rule(cam, None)
        after = _info(cam)
        _audit(
            s,
            actor,
            "camera_update",
            after,
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
        )
        return before, after
