"""Creating, listing, showing and deleting galleries."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.core.names import SegmentName, check_name
from vigil.gallery.schedule import parse_days, parse_hhmm
from vigil.storage import audit
from vigil.storage.tables import ApiKey, Gallery, GalleryKind, Identity, Photo, Template

MAX_RETENTION_DAYS = 36_600
"""A hundred years: the longest retention a gallery or camera may set (bounded so the date stays valid)."""


class GallerySpec(BaseModel):
    """What a new gallery needs. Watchlists need a purpose, a legal basis, who authorised them and
    an expiry date in the future."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: SegmentName
    kind: GalleryKind
    purpose: str | None = None
    legal_basis: str | None = None
    authorized_by: str | None = None
    expires_on: date | None = None
    confirmations_required: int = Field(
        default=1, ge=1, le=3, description="different people who must confirm an alarm before it counts"
    )
    sites: list[str] | None = Field(default=None, description="a watchlist alarms only at these sites")
    cameras: list[str] | None = Field(default=None, description="a watchlist alarms only on these cameras")
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="alarms (rows, crops, snapshots) are purged this many days after capture",
    )
    attendance_start: str | None = Field(
        default=None, description="attendance galleries: expected arrival, HH:MM local time"
    )
    attendance_end: str | None = Field(
        default=None, description="attendance galleries: expected leaving, HH:MM local time"
    )
    attendance_days: str | None = Field(
        default=None, description="attendance galleries: working days, e.g. mon-fri or mon,wed,fri"
    )
    attendance_grace_min: int | None = Field(
        default=None, ge=0, le=720, description="attendance galleries: minutes after the start before 'late'"
    )

    @field_validator("attendance_start", "attendance_end")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        return parse_hhmm(v) if v else None

    @field_validator("attendance_days")
    @classmethod
    def _days(cls, v: str | None) -> str | None:
        return parse_days(v) if v else None

    @field_validator("sites", "cameras")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        names = [check_name(n, "site or camera name", segment=True) for n in v if n and n.strip()]
        if any("," in n for n in names):
            raise ValueError("a site or camera name cannot contain a comma")
        return names or None

    @field_validator("purpose", "legal_basis", "authorized_by")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v or None

    @model_validator(mode="after")
    def _watchlist_lawful(self) -> GallerySpec:
        if self.kind is GalleryKind.watchlist:
            missing = [
                flag
                for flag, value in (
                    ("--purpose", self.purpose),
                    ("--legal-basis", self.legal_basis),
                    ("--authorized-by", self.authorized_by),
                    ("--expires", self.expires_on),
                )
                if value is None
            ]
            if missing:
                raise ValueError(
                    "a watchlist needs a purpose, a legal basis, who authorised it and an expiry date; "
                    "missing: " + ", ".join(missing)
                )
        if self.expires_on is not None and self.expires_on <= date.today():
            raise ValueError(f"the expiry date {self.expires_on} is not in the future")
        schedule = (
            self.attendance_start,
            self.attendance_end,
            self.attendance_days,
            self.attendance_grace_min,
        )
        if self.kind is not GalleryKind.attendance and any(v is not None for v in schedule):
            raise ValueError("a schedule (--start, --end, --days, --grace) is only for attendance galleries")
        if self.attendance_start and self.attendance_end and self.attendance_end <= self.attendance_start:
            raise ValueError(
                f"the end {self.attendance_end} is not after the start {self.attendance_start} "
                "(shifts over midnight are not supported)"
            )
        return self


class GalleryInfo(BaseModel):
    id: int
    name: str
    kind: GalleryKind
    purpose: str | None
    legal_basis: str | None
    authorized_by: str | None
    expires_on: date | None
    expired: bool
    confirmations_required: int
    sites: list[str] | None
    cameras: list[str] | None
    retention_days: int | None
    attendance_start: str | None = None
    attendance_end: str | None = None
    attendance_days: str | None = None
    attendance_grace_min: int | None = None
    created_at: datetime
    identities: int
    templates: int
    photos: int


def validate_spec(**fields: object) -> GallerySpec:
    """A :class:`GallerySpec` or an :class:`InputError` naming every problem."""
    from pydantic import ValidationError

    try:
        return GallerySpec.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise InputError(f"invalid gallery: {problems}") from exc


def create_gallery(app: App, spec: GallerySpec, *, actor: str = audit.SYSTEM) -> GalleryInfo:
    """Create a gallery; audited (``gallery_create``, with its terms) in the same transaction."""
    with app.db.session() as s:
        if s.scalar(select(Gallery.id).where(Gallery.name == spec.name)) is not None:
            raise ConflictError(f"a gallery named {spec.name!r} already exists", hint="choose another name")
        data = spec.model_dump()
        data["sites"] = ",".join(spec.sites) if spec.sites else None
        data["cameras"] = ",".join(spec.cameras) if spec.cameras else None
        gallery = Gallery(**data)
        s.add(gallery)
        s.flush()
        info = _info(s, gallery)
        audit.append(
            s,
            actor,
            "gallery_create",
            target_type="gallery",
            target_id=info.id,
            target_name=info.name,
            terms=info.model_dump(mode="json", include=TERMS),
        )
        return info


def get_gallery(s: Session, name: str) -> Gallery:
    gallery = s.scalar(select(Gallery).where(Gallery.name == name))
    if gallery is None:
        known = s.scalars(select(Gallery.name).order_by(Gallery.name)).all()
        hint = f"known galleries: {', '.join(known)}" if known else "create one with `vigil gallery create`"
        raise NotFoundError(f"no gallery named {name!r}", hint=hint)
    return gallery


def _info(s: Session, g: Gallery) -> GalleryInfo:
    identities = s.scalar(select(func.count(Identity.id)).where(Identity.gallery_id == g.id)) or 0
    templates = (
        s.scalar(select(func.count(Template.id)).join(Identity).where(Identity.gallery_id == g.id)) or 0
    )
    photos = s.scalar(select(func.count(Photo.id)).join(Identity).where(Identity.gallery_id == g.id)) or 0
    return GalleryInfo(
        id=g.id,
        name=g.name,
        kind=g.kind,
        purpose=g.purpose,
        legal_basis=g.legal_basis,
        authorized_by=g.authorized_by,
        expires_on=g.expires_on,
        expired=g.is_expired(),
        confirmations_required=g.confirmations_required,
        sites=g.sites.split(",") if g.sites else None,
        cameras=g.cameras.split(",") if g.cameras else None,
        retention_days=g.retention_days,
        attendance_start=g.attendance_start,
        attendance_end=g.attendance_end,
        attendance_days=g.attendance_days,
        attendance_grace_min=g.attendance_grace_min,
        created_at=g.created_at,
        identities=identities,
        templates=templates,
        photos=photos,
    )


def list_galleries(app: App) -> list[GalleryInfo]:
    with app.db.session() as s:
        return [_info(s, g) for g in s.scalars(select(Gallery).order_by(Gallery.name))]


def show_gallery(app: App, name: str) -> GalleryInfo:
    with app.db.session() as s:
        return _info(s, get_gallery(s, name))


def delete_gallery(app: App, name: str, *, actor: str = audit.SYSTEM) -> GalleryInfo:
    """Delete a gallery, its identities, templates, index files and photos no one else uses; the API keys
    bound to it are revoked. Audited (``gallery_delete``, with the counts) in the same transaction."""
    from vigil.gallery.enroll import delete_unreferenced_blobs

    with app.db.session() as s:
        gallery = get_gallery(s, name)
        info = _info(s, gallery)
        shas = set(
            s.scalars(select(Photo.sha256).join(Identity).where(Identity.gallery_id == gallery.id)).all()
        )
        # Its keys are revoked, not unbound: a key bound to it would otherwise reach every gallery.
        s.execute(update(ApiKey).where(ApiKey.gallery_id == gallery.id).values(revoked=True))
        s.delete(gallery)
        audit.append(
            s,
            actor,
            "gallery_delete",
            target_type="gallery",
            target_id=info.id,
            target_name=name,
            identities=info.identities,
            templates=info.templates,
            photos=info.photos,
        )
    app.indexes.drop_gallery(info.id)
    delete_unreferenced_blobs(app, shas)
    return info


UPDATABLE = (
    "purpose",
    "legal_basis",
    "authorized_by",
    "expires_on",
    "confirmations_required",
    "sites",
    "cameras",
    "retention_days",
    "attendance_start",
    "attendance_end",
    "attendance_days",
    "attendance_grace_min",
)


TERMS = {"kind", *UPDATABLE}
"""The terms of a gallery the audit records (on creation, and before and after each change)."""


def update_gallery(
    app: App, name: str, changes: dict[str, object], *, actor: str = audit.SYSTEM
) -> tuple[GalleryInfo, GalleryInfo]:
    """Change a gallery's terms (a watchlist keeps needing all of them); returns (before, after).
    Audited (``gallery_update``, the terms before and after) in the same transaction."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise InputError(
            f"cannot change {', '.join(sorted(unknown))} of a gallery",
            hint="changeable: " + ", ".join(UPDATABLE),
        )
    with app.db.session() as s:
        gallery = get_gallery(s, name)
        before = _info(s, gallery)
        merged = {**before.model_dump(include={"name", "kind", *UPDATABLE}), **changes}
        if "expires_on" not in changes:  # unchanged: not re-checked against today
            merged["expires_on"] = date.max if before.expires_on else None
        spec = validate_spec(**merged)
        for key in changes:
            value = getattr(spec, key)
            if key in ("sites", "cameras"):
                value = ",".join(value) if value else None
            setattr(gallery, key, value)
        s.flush()
        after = _info(s, gallery)
        audit.append(
            s,
            actor,
            "gallery_update",
            target_type="gallery",
            target_id=after.id,
            target_name=name,
            before=before.model_dump(mode="json", include=TERMS),
            after=after.model_dump(mode="json", include=TERMS),
        )
        return before, after
