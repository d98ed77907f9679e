"""An alarm's evidence, exported so that the copy handed over can be checked later.

:func:`export_alarm` writes three files to a folder: the alarm's face crop (``crop.jpg``, as
stored), the stored frame thumbnail with every other face blurred (``frame.png``) and
``manifest.json``: the alarm's facts, each file's name, SHA-256 and size, the exporter, the time,
the vigil version and the SHA-256 of the manifest's own canonical body. The export is audited
(``alarm_export``, with the manifest's SHA-256 and the files' hashes). :func:`verify_export` checks
a folder against its manifest and, given the catalog, finds the audit entry that recorded it.

The pipeline stores a thumbnail of the frame at most 480 px wide with the alarm's box drawn in
red, not the frame itself: the box's scale in it is found from that red rectangle, and the other
faces are found by the detector on the thumbnail upscaled 2x (a face under about 40 px in the
thumbnail may be missed).
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import select

from vigil import __version__
from vigil.app import App
from vigil.core.errors import InputError, NotFoundError
from vigil.storage import audit
from vigil.storage.tables import AuditEntry
from vigil.video.alarms import AlarmDetail, alarm_detail
from vigil.video.redact import blur_boxes, grow
from vigil.video.tracker import iou_matrix

MANIFEST = "manifest.json"
CROP = "crop.jpg"
FRAME = "frame.png"


class ExportedFile(BaseModel):
    name: str
    sha256: str
    size: int


class ExportResult(BaseModel):
    """What :func:`export_alarm` wrote."""

    alarm_id: int
    out_dir: str
    manifest_sha256: str
    files: list[ExportedFile]
    faces_blurred: int


class VerifyExportResult(BaseModel):
    """What :func:`verify_export` found: ``ok`` when every hash matches (and the audit entry, if
    the catalog was given, was found)."""

    ok: bool
    alarm_id: int | None
    manifest_sha256: str | None
    problems: list[str]
    audit_entry_id: int | None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(body: dict[str, Any]) -> bytes:
    """The manifest's canonical body: sorted keys, no spaces, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def box_scale(thumb: npt.NDArray[np.uint8], xyxy: list[float]) -> float:
    """The scale at which the alarm's box ``xyxy`` was drawn (red, 2 px) on the (h, w, 3) thumbnail."""
    b, g, r = (thumb[..., i].astype(np.int16) for i in range(3))
    red = (r > 150) & (g < 90) & (b < 90)
    h, w = red.shape
    best, best_score = 1.0, -1.0
    for s in np.arange(0.05, 1.0001, 0.0025):
        x1, y1, x2, y2 = (round(v * s) for v in xyxy)
        if not (0 <= x1 < x2 < w + 2 and 0 <= y1 < y2 < h + 2):
            continue
        xs = np.arange(max(0, x1), min(w, x2 + 1))
        ys = np.arange(max(0, y1), min(h, y2 + 1))
        edges = [
            red[min(y1, h - 1), xs],
            red[min(y2, h - 1), xs],
            red[ys, min(x1, w - 1)],
            red[ys, min(x2, w - 1)],
        ]
        score = float(np.mean(np.concatenate(edges))) if len(xs) and len(ys) else 0.0
        if score > best_score:
            best, best_score = float(s), score
    return best


def blur_bystanders(
    app: App, thumb: npt.NDArray[np.uint8], xyxy: list[float]
) -> tuple[npt.NDArray[np.uint8], int]:
    """The thumbnail with every face blurred but the alarm's; and how many were blurred."""
    import cv2

    scale = box_scale(thumb, xyxy)
    own = np.asarray([[v * scale for v in xyxy]], np.float32)
    big = np.asarray(cv2.resize(thumb, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), np.uint8)
    faces = app.engine.detector.detect(big).scaled(0.5)
    if not len(faces):
        return thumb, 0
    others = faces.xyxy[iou_matrix(faces.xyxy, own)[:, 0] < 0.3]
    h, w = thumb.shape[:2]
    return blur_boxes(thumb, grow(others, 0.25, w, h)), len(others)


def _evidence(app: App, alarm: AlarmDetail) -> tuple[bytes, bytes, int]:
    import cv2

    if alarm.crop_sha256 is None or alarm.thumbnail_sha256 is None:
        raise NotFoundError(
            f"alarm {alarm.id} has no stored crop or frame (purged, or raised without them)",
            hint="an alarm's evidence is kept for its retention period only",
        )
    crop = app.blobs.get(alarm.crop_sha256)
    thumb = cv2.imdecode(np.frombuffer(app.blobs.get(alarm.thumbnail_sha256), np.uint8), cv2.IMREAD_COLOR)
    if thumb is None:
        raise InputError(f"alarm {alarm.id}: the stored frame cannot be decoded", hint="check the blob store")
    frame, blurred = blur_bystanders(app, np.asarray(thumb, np.uint8), alarm.box_xyxy)
    ok, png = cv2.imencode(".png", frame)
    if not ok:
        raise InputError(f"alarm {alarm.id}: the frame cannot be encoded", hint="check the blob store")
    return crop, bytes(png), blurred


def export_alarm(app: App, alarm_id: int, out_dir: Path, *, actor: str = audit.SYSTEM) -> ExportResult:
    """Write alarm ``alarm_id``'s evidence to the new (or empty) folder ``out_dir``; audited
    (``alarm_export``: the manifest's SHA-256 and each file's)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir}: not an empty folder", hint="export to a new folder")
    if not out_dir.parent.is_dir():
        raise InputError(f"{out_dir.parent}: no such folder", hint="create it first")
    alarm = alarm_detail(app, alarm_id)
    crop, frame, blurred = _evidence(app, alarm)
    files = [ExportedFile(name=n, sha256=_sha(d), size=len(d)) for n, d in ((CROP, crop), (FRAME, frame))]
    body = {
        "alarm_id": alarm.id,
        "camera": alarm.camera,
        "device": alarm.device,
        "kind": alarm.kind.value,
        "gallery": alarm.gallery,
        "identity": alarm.identity,
        "score": alarm.score,
        "threshold": alarm.threshold,
        "fpir": alarm.fpir,
        "model": alarm.model,
        "captured_at": alarm.captured_at.isoformat(),
        "state": alarm.state,
        "files": [f.model_dump() for f in files],
        "bystanders_blurred": blurred,
        "exporter": actor,
        "exported_at": datetime.now(UTC).isoformat(),
        "vigil_version": __version__,
    }
    digest = _sha(canonical(body))
    out_dir.mkdir(exist_ok=True)
    (out_dir / CROP).write_bytes(crop)
    (out_dir / FRAME).write_bytes(frame)
    manifest = {**body, "manifest_sha256": digest}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    audit.record(
        app,
        actor,
        "alarm_export",
        target_type="alarm",
        target_id=alarm.id,
        manifest_sha256=digest,
        files={f.name: f.sha256 for f in files},
    )
    return ExportResult(
        alarm_id=alarm.id, out_dir=str(out_dir), manifest_sha256=digest, files=files, faces_blurred=blurred
    )


def verify_export(folder: Path, app: App | None = None) -> VerifyExportResult:
    """Check ``folder``'s files against its manifest, and the manifest against its own hash; with
    ``app`` (the server's catalog), find the ``alarm_export`` audit entry that recorded it."""
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder}: no {MANIFEST} here", hint="give the folder an export wrote")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        claimed = manifest.pop("manifest_sha256")
        listed = [ExportedFile.model_validate(f) for f in manifest["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a vigil export manifest ({exc})", hint="it may have been edited"
        ) from exc
    problems: list[str] = []
    if _sha(canonical(manifest)) != claimed:
        problems.append("the manifest was changed after the export (its hash does not match)")
    for f in listed:
        p = folder / Path(f.name).name
        if not p.is_file():
            problems.append(f"{f.name}: missing")
        elif _sha(p.read_bytes()) != f.sha256 or p.stat().st_size != f.size:
            problems.append(f"{f.name}: changed (hash or size differs)")
    entry_id = None
    if app is not None:
        with app.db.session() as s:
            rows = s.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "alarm_export", AuditEntry.detail.contains(str(claimed))
                )
            ).all()
        entry_id = rows[0].id if rows else None
        if entry_id is None:
            problems.append("no alarm_export entry with this manifest's hash in this catalog's audit log")
    alarm_id = manifest.get("alarm_id")
    return VerifyExportResult(
        ok=not problems,
        alarm_id=alarm_id if isinstance(alarm_id, int) else None,
        manifest_sha256=str(claimed),
        problems=problems,
        audit_entry_id=entry_id,
    )


def export_zip(app: App, alarm_id: int, *, actor: str = audit.SYSTEM) -> tuple[bytes, str]:
    """:func:`export_alarm` as a zip of the same three files (the API's download); and the
    manifest's SHA-256."""
    with tempfile.TemporaryDirectory(prefix="vigil-export-") as tmp:
        folder = Path(tmp) / f"alarm-{alarm_id}"
        result = export_alarm(app, alarm_id, folder, actor=actor)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name in (CROP, FRAME, MANIFEST):
                z.write(folder / name, name)
    return buf.getvalue(), result.manifest_sha256
