"""Which galleries a caller may see: every one, or the one its API key is bound to.

A key bound to a gallery (``vigil keys create NAME --gallery G``) must never see another gallery's
people, photos, alarms or comparisons. The server derives one :class:`GalleryScope` per request from
the caller (``vigil.server.deps.Scope``) and every gallery-touching route checks through it, so the
rule is written here once. Out of scope reads as not found, with the same message as a gallery, person
or alarm that does not exist: a bound key cannot learn that another gallery's data exists.

>>> EVERY.allows(7), GalleryScope(3, "staff").allows(7)
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select

from vigil.app import App
from vigil.core.errors import NotFoundError
from vigil.storage.tables import AlarmRecord, Gallery, Identity, Photo, Sighting


@dataclass(frozen=True)
class GalleryScope:
    """``gallery_id`` None: every gallery; else only that one (named ``gallery_name``)."""

    gallery_id: int | None = None
    gallery_name: str | None = None

    @classmethod
    def bound_to(cls, app: App, gallery_id: int) -> GalleryScope:
        with app.db.session() as s:
            name = s.scalar(select(Gallery.name).where(Gallery.id == gallery_id))
        return cls(gallery_id, name)

    @property
    def bound(self) -> bool:
        return self.gallery_id is not None

    def allows(self, gallery_id: int | None) -> bool:
        return self.gallery_id is None or gallery_id == self.gallery_id

    def allows_name(self, name: str | None) -> bool:
        return self.gallery_id is None or (name is not None and name == self.gallery_name)

    def check(self, gallery_id: int | None, not_found: str) -> None:
        """Raise NotFoundError(``not_found``) unless the gallery is within scope."""
        if not self.allows(gallery_id):
            raise NotFoundError(not_found)

    def gallery(self, name: str) -> str:
        """``name``, if the gallery is within scope (whether it exists is the service's to say)."""
        if not self.allows_name(name):
            raise NotFoundError(f"no gallery named {name!r}")
        return name

    def own(self) -> str:
        """The name of the bound gallery."""
        if self.gallery_name is None:
            raise NotFoundError("the gallery this API key is bound to no longer exists")
        return self.gallery_name

    def galleries(self, names: Sequence[str] | None) -> list[str] | None:
        """Galleries to search: those named (each within scope), else the bound one, else all (None)."""
        if names:
            return [self.gallery(n) for n in names]
        return [self.own()] if self.bound else None

    def gallery_filter(self, name: str | None) -> str | None:
        """A listing's gallery filter: the one named (within scope), else the bound one, else none."""
        if name is not None:
            return self.gallery(name)
        return self.own() if self.bound else None

    def check_alarm(self, app: App, alarm_id: int) -> None:
        if not self.bound:
            return
        with app.db.session() as s:
            gallery_id = s.scalar(select(AlarmRecord.gallery_id).where(AlarmRecord.id == alarm_id))
        self.check(gallery_id if gallery_id is not None else -1, f"no alarm with id {alarm_id}")

    def check_media(self, app: App, sha256: str) -> None:
        """A stored image is within scope when it is an enrolment photo of the gallery's people, the crop
        or thumbnail of one of its alarms, or the crop of a sighting of one of its people."""
        if not self.bound:
            return
        photo = select(Photo.id).join(Identity).where(Identity.gallery_id == self.gallery_id)
        alarm = select(AlarmRecord.id).where(
            AlarmRecord.gallery_id == self.gallery_id,
            or_(AlarmRecord.crop_sha256 == sha256, AlarmRecord.thumbnail_sha256 == sha256),
        )
        sighting = (
            select(Sighting.id)
            .join(Identity, Identity.id == Sighting.identity_id)
            .where(Identity.gallery_id == self.gallery_id)
        )
        with app.db.session() as s:
            found = (
                s.scalar(photo.where(Photo.sha256 == sha256).limit(1))
                or s.scalar(alarm.limit(1))
                or s.scalar(sighting.where(Sighting.crop_sha256 == sha256).limit(1))
            )
        if found is None:
            raise NotFoundError(f"no stored image {sha256[:16]}")


EVERY = GalleryScope()
"""The scope of users and of keys bound to no gallery."""
