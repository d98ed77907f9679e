"""The catalog's record of the active model pack (one ``active_model`` row), read and first written here.

The switch job (:mod:`vigil.gallery.modelstate`) flips it; :mod:`vigil.vision.packs.resolve` reads it
and records the first choice.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.storage import audit
from vigil.storage.db import HasDatabase
from vigil.storage.tables import ActiveModel

_PACK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,49}$")


class PackContext(HasDatabase, Protocol):
    """What the pack functions take: the settings and the catalog (:class:`vigil.app.App` is one)."""

    @property
    def settings(self) -> Settings: ...


class ActiveModelInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    pack: str
    model_id: str
    since: datetime
    recorded_by: str
    switch_id: int | None


def active_model(app: HasDatabase) -> ActiveModelInfo | None:
    """The pack and model the catalog records as active; None if none was ever recorded."""
    with app.db.session() as s:
        row = s.get(ActiveModel, 1)
        return ActiveModelInfo.model_validate(row) if row is not None else None


def active_pack(app: HasDatabase) -> str | None:
    """The pack recorded in the catalog as active; None if none was ever recorded."""
    info = active_model(app)
    return info.pack if info is not None else None


def record_initial_pack(app: HasDatabase, pack: str, model_id: str, actor: str) -> None:
    """Record the first choice of pack (audited, ``model_pack_initial``); a no-op once one is recorded."""
    check_names(pack, model_id)
    try:
        with app.db.session() as s:
            if s.get(ActiveModel, 1) is not None:
                return
            s.add(ActiveModel(id=1, pack=pack, model_id=model_id, recorded_by=actor))
    except IntegrityError:  # another process recorded its choice first
        return
    audit.record(
        app, actor, "model_pack_initial", target_type="model_pack", target_name=pack, model_id=model_id
    )


def check_names(pack: str, model_id: str) -> None:
    if not _PACK_NAME.match(pack):
        raise InputError(f"{pack!r} is not a model pack name", hint="see `vigil models list`")
    if not model_id or len(model_id) > 100:
        raise InputError(f"{model_id!r} is not a model id")
