"""Reviews that teach: a dismissed alarm's face kept as a negative example (issue 17, item 1).

A reviewer who dismisses an alarm as "not this person" keeps the stranger's template as a negative
example for that identity in that watchlist (:func:`keep_negative`, inside the review's
transaction). A later face whose similarity to an active negative is greater than its score against
the identity itself (nearer to the stranger than to the person) raises no alarm for that identity:
:func:`suppressing` names the negatives that stop it, and the alarm is stored ``suppressed`` with
them (``alarms.suppressed_by``), audited, and each negative's ``uses`` counted
(:func:`record_uses`). Negatives only remove alarms, never add them: the watchlist's threshold and
its calibration are untouched, and a face below threshold is never looked at.

The template is computed again from the alarm's stored face crop with the server's engine when the
alarm is dismissed (:func:`negative_template`): the pipeline's own template is not stored with an
alarm, so no template of an alarmed face is kept unless a reviewer asks for it. Re-embedding the crop
gives the pipeline's score again to within a few thousandths (``bench/negatives.py`` measures it).

A negative belongs to its alarm (``alarm_negatives.alarm_id``, ``ON DELETE CASCADE``): it is purged
with the alarm's retention, erased with the person or the watchlist, and sealed at rest like every
template. :func:`undo_negative` stops it (kept for the record until its alarm goes).

Negatives are read from the catalog each time a hit is checked (an indexed query on the identity and
model, only for faces above threshold), not cached: camera workers are other processes, and an undo
or a purge there must take effect at the next face, not at the next restart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.core.types import FaceDetections
from vigil.events.schemas import Alarm
from vigil.storage import audit
from vigil.storage.tables import AlarmNegative, AlarmRecord

CROP_MARGIN = 0.4
"""The margin the pipeline's face crop has on each side (:func:`vigil.video.evidence.crop_jpeg`)."""
MIN_FACE_PX = 160
"""A crop whose face is smaller is scaled up before the face is found again in it."""


class NegativeInfo(BaseModel):
    id: int
    alarm_id: int
    """The dismissed alarm it was kept from."""
    gallery_id: int
    identity_id: int
    model: str
    created_by: str
    created_at: datetime
    undone_at: datetime | None
    undone_by: str | None
    uses: int
    """Later faces it suppressed."""


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _info(n: AlarmNegative) -> NegativeInfo:
    created = _utc(n.created_at)
    assert created is not None
    return NegativeInfo(
        id=n.id,
        alarm_id=n.alarm_id,
        gallery_id=n.gallery_id,
        identity_id=n.identity_id,
        model=n.model_id,
        created_by=n.created_by,
        created_at=created,
        undone_at=_utc(n.undone_at),
        undone_by=n.undone_by,
        uses=n.uses,
    )


# -- keeping one ----------------------------------------------------------------------------------


def _expected_box(box_xyxy: list[float]) -> npt.NDArray[np.float32] | None:
    """Where the alarm's face lies in its crop (the crop is the box with :data:`CROP_MARGIN`, clipped
    to the frame on the left and top: its origin follows from the box)."""
    if len(box_xyxy) != 4:
        return None  # central alarms have no box
    x1, y1, x2, y2 = box_xyxy
    ox, oy = max(0, int(x1 - (x2 - x1) * CROP_MARGIN)), max(0, int(y1 - (y2 - y1) * CROP_MARGIN))
    return np.asarray([x1 - ox, y1 - oy, x2 - ox, y2 - oy], np.float32)


def _iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def negative_template(app: App, alarm_id: int) -> npt.NDArray[np.float32]:
    """The (d,) float32 L2-normalised template of alarm ``alarm_id``'s face, embedded again from its
    stored crop with the server's engine. Refused (:class:`InputError`) when the alarm has no crop,
    was raised with another model than the server's, or the face cannot be found in the crop."""
    with app.db.session() as s:
        alarm = s.get(AlarmRecord, alarm_id)
        if alarm is None:
            raise NotFoundError(f"no alarm with id {alarm_id}")
        crop_sha, model, box = alarm.crop_sha256, alarm.model_id, alarm.box_xyxy
        if alarm.identity_id is None or alarm.gallery_id is None:
            raise InputError(
                f"alarm {alarm_id} names no person on a watchlist (a stranger alarm, or the person or "
                "watchlist was deleted since): there is nobody to teach",
                hint="dismiss it without 'not this person'",
            )
    if model != app.engine.model_id:
        raise InputError(
            f"alarm {alarm_id} was raised with model {model}; this server now uses {app.engine.model_id}",
            hint="dismiss it without 'not this person': its face cannot teach the model in use",
        )
    try:
        data = app.blobs.get(crop_sha) if crop_sha else b""
    except NotFoundError:
        data = b""
    v = template_from_crop(app, data, [float(x) for x in box.split(",")] if box else [])
    if isinstance(v, str):
        raise InputError(f"alarm {alarm_id}: {v}", hint="dismiss it without 'not this person'")
    return v


def template_from_crop(app: App, crop_jpeg: bytes, box_xyxy: list[float]) -> npt.NDArray[np.float32] | str:
    """The (d,) float32 L2-normalised template of the face in an alarm's crop (JPEG bytes; the
    alarm's box ``box_xyxy`` in the frame says where the face lies in it, see :func:`_expected_box`),
    or why there is none."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(crop_jpeg, np.uint8), cv2.IMREAD_COLOR) if crop_jpeg else None
    if bgr is None:
        return "no readable face crop to keep as a negative example"
    expected = _expected_box(box_xyxy)
    face_px = 0.0 if expected is None else float(min(expected[2] - expected[0], expected[3] - expected[1]))
    scale = MIN_FACE_PX / face_px if 0 < face_px < MIN_FACE_PX else 1.0
    if scale > 1.0:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    image = np.asarray(bgr, np.uint8)
    faces = app.engine.detect(image)
    chosen = _chosen_face(faces, None if expected is None else expected * scale)
    if chosen is None:
        return "no face found again in its crop, so there is no template to keep"
    embedded = app.engine.embed(image, faces[np.asarray([chosen])])
    assert embedded.embedding is not None
    v = np.asarray(embedded.embedding[0], np.float32)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _chosen_face(faces: FaceDetections, expected: npt.NDArray[np.float32] | None) -> int | None:
    """The detected face where the alarm's box lies (IoU >= 0.3), or the largest without a box."""
    if len(faces) == 0:
        return None
    if expected is None:
        return 0  # largest first
    ious = [_iou(np.asarray(b, np.float32), expected) for b in faces.xyxy]
    best = int(np.argmax(ious))
    return best if ious[best] >= 0.3 else None


def keep_negative(
    s: Session, alarm: AlarmRecord, template: npt.NDArray[np.float32], actor: str
) -> AlarmNegative:
    """Keep ``template`` (the (d,) float32 template of ``alarm``'s face) as a negative example for the
    alarm's identity in its watchlist; call inside the dismissal's transaction. Audited
    (``negative_kept``)."""
    if alarm.identity_id is None or alarm.gallery_id is None:
        raise ConflictError(
            f"alarm {alarm.id}: its person or watchlist was deleted since; there is nobody to teach",
            hint="dismiss it without 'not this person'",
        )
    if s.scalar(select(AlarmNegative.id).where(AlarmNegative.alarm_id == alarm.id)) is not None:
        raise ConflictError(f"alarm {alarm.id} already keeps a negative example")
    vector = np.asarray(template, "<f4")
    negative = AlarmNegative(
        alarm_id=alarm.id,
        gallery_id=alarm.gallery_id,
        identity_id=alarm.identity_id,
        model_id=alarm.model_id,
        dimension=int(vector.shape[0]),
        vector=vector.tobytes(),
        created_by=actor,
    )
    s.add(negative)
    s.flush()
    audit.append(
        s,
        actor,
        "negative_kept",
        target_type="alarm_negative",
        target_id=negative.id,
        target_name=alarm.identity_name,
        alarm_id=alarm.id,
        gallery_id=alarm.gallery_id,
        identity_id=alarm.identity_id,
        model=alarm.model_id,
    )
    return negative


# -- undoing one, listing them ----------------------------------------------------------------------


def undo_negative(app: App, negative_id: int, actor: str) -> NegativeInfo:
    """Stop negative ``negative_id`` from suppressing alarms (its earlier uses stay on record).
    Audited (``negative_undone``). Undoing one twice is a :class:`ConflictError`."""
    with app.db.session() as s:
        n = s.get(AlarmNegative, negative_id)
        if n is None:
            raise NotFoundError(f"no negative example with id {negative_id}", hint="it may have been purged")
        if n.undone_at is not None:
            raise ConflictError(f"negative example {negative_id} was undone already by {n.undone_by}")
        n.undone_at, n.undone_by = datetime.now(UTC), actor
        s.flush()
        audit.append(
            s,
            actor,
            "negative_undone",
            target_type="alarm_negative",
            target_id=n.id,
            alarm_id=n.alarm_id,
            gallery_id=n.gallery_id,
            identity_id=n.identity_id,
            uses=n.uses,
        )
        return _info(n)


def negative_gallery_id(app: App, negative_id: int) -> int | None:
    """The watchlist a negative example belongs to (None: no such negative), for scope checks."""
    with app.db.session() as s:
        return s.scalar(select(AlarmNegative.gallery_id).where(AlarmNegative.id == negative_id))


def negative_of_alarm(s: Session, alarm_id: int) -> NegativeInfo | None:
    """The negative example kept when alarm ``alarm_id`` was dismissed, if any."""
    n = s.scalar(select(AlarmNegative).where(AlarmNegative.alarm_id == alarm_id))
    return _info(n) if n is not None else None


def negatives_by_id(s: Session, ids: list[int]) -> list[NegativeInfo]:
    """The negatives among ``ids`` still in the catalog (a purged one is gone), by id."""
    if not ids:
        return []
    rows = s.scalars(select(AlarmNegative).where(AlarmNegative.id.in_(ids)).order_by(AlarmNegative.id))
    return [_info(n) for n in rows]


def parse_ids(suppressed_by: str | None) -> list[int]:
    """``alarms.suppressed_by`` (a JSON list of negative ids) as a list."""
    if not suppressed_by:
        return []
    try:
        value = json.loads(suppressed_by)
    except ValueError:
        return []
    return [int(v) for v in value if isinstance(v, int)] if isinstance(value, list) else []


# -- using them -----------------------------------------------------------------------------------


def suppressing(
    app: App, identity_id: int, model_id: str, embedding: npt.NDArray[np.float32], score: float
) -> list[int]:
    """The active negatives of ``identity_id`` (of ``model_id``) nearer to the (d,) float32
    ``embedding`` than the identity itself is (``score``: the face's best score against the
    identity's templates): the face is more like the strangers reviewers dismissed than like the
    person. Empty: the alarm stands. Read from the catalog each call (see the module doc)."""
    with app.db.session() as s:
        rows = s.execute(
            select(AlarmNegative.id, AlarmNegative.vector, AlarmNegative.dimension).where(
                AlarmNegative.identity_id == identity_id,
                AlarmNegative.model_id == model_id,
                AlarmNegative.undone_at.is_(None),
            )
        ).all()
    e = np.asarray(embedding, np.float32).ravel()
    found = []
    for negative_id, vector, dimension in rows:
        v = np.frombuffer(vector, "<f4")
        if dimension != e.shape[0] or v.shape[0] != dimension:
            continue
        if float(v @ e) > score:
            found.append(int(negative_id))
    return found


def screen_arriving(app: App, alarm: Alarm) -> Alarm:
    """An edge device's alarm screened against the negatives when it reaches the server (the
    device's own catalog holds no negatives): its face is embedded again from the crop it carries,
    only when the identity has an active negative of the alarm's model, the server's. The alarm with
    ``suppressed_by`` set, or unchanged (no crop, another model, no negative nearer)."""
    if alarm.suppressed_by or not alarm.crop_jpeg or alarm.model != app.engine.model_id:
        return alarm
    if alarm.identity_id is None:  # a stranger alarm names no one: there is nobody to screen for
        return alarm
    with app.db.session() as s:
        active = s.scalar(
            select(AlarmNegative.id)
            .where(
                AlarmNegative.identity_id == alarm.identity_id,
                AlarmNegative.model_id == alarm.model,
                AlarmNegative.undone_at.is_(None),
            )
            .limit(1)
        )
    if active is None:
        return alarm
    v = template_from_crop(app, alarm.crop_jpeg, alarm.xyxy)
    if isinstance(v, str):
        return alarm  # no face found again: the alarm stands
    found = suppressing(app, alarm.identity_id, alarm.model, v, alarm.score)
    return alarm.model_copy(update={"suppressed_by": found}) if found else alarm


def record_uses(s: Session, negative_ids: list[int]) -> None:
    """Count one use on each of ``negative_ids`` (inside the transaction storing the suppressed alarm)."""
    if negative_ids:
        s.execute(
            update(AlarmNegative)
            .where(AlarmNegative.id.in_(negative_ids))
            .values(uses=AlarmNegative.uses + 1)
            .execution_options(synchronize_session=False)
        )
