"""Model packs and switching between them: every gallery re-embedded from its stored photos as a
background job (see vigil.gallery.modelstate and vigil.server.model_switch). Anyone logged in may see
which models are in use and their licences; only an admin installs a pack or starts a switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from vigil.accounts import Principal
from vigil.core.errors import NotFoundError
from vigil.gallery import modelstate
from vigil.server import model_switch
from vigil.server.deps import ANY_ROLE, Admin, State, require
from vigil.vision.packs.active import active_model

router = APIRouter(prefix="/api/models", tags=["models"])

Viewer = Annotated[Principal, Depends(require(*ANY_ROLE, whole_server=True))]
"""The models serve every gallery: a gallery-bound key is refused."""
PackName = Annotated[str, Path(min_length=1, max_length=50, description="a model pack, e.g. edgeface-xs")]


class ModelsView(BaseModel):
    packs: list[model_switch.PackView]
    active: str | None
    """The pack the catalog records as active (None: none was chosen yet)."""
    active_model_id: str | None
    in_use: str | None
    """The pack the server's engine uses (the legacy model settings make it ``custom``)."""
    switch: modelstate.SwitchStatus | None
    """The running switch, else the latest one."""


class SwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pack: str = Field(
        min_length=1,
        max_length=50,
        examples=["edgeface-xs"],
        description="the installed pack to switch to; every gallery is re-embedded with it",
    )


@router.get("", summary="Model packs with their licences and state, the active pack and the current switch")
def models(st: State, _: Viewer) -> ModelsView:
    app = st.app
    active = active_model(app)
    return ModelsView(
        packs=model_switch.pack_views(app),
        active=active.pack if active else None,
        active_model_id=active.model_id if active else None,
        in_use=app.pack,
        switch=modelstate.current_switch(app),
    )


@router.get("/switch", summary="The running model switch (its progress), else the latest one")
def switch_status(st: State, _: Viewer) -> modelstate.SwitchStatus:
    current = modelstate.current_switch(st.app)
    if current is None:
        raise NotFoundError("no model switch was ever started", hint="POST /api/models/switch")
    return current


@router.post(
    "/switch",
    status_code=202,
    summary="Switch to another installed pack: every gallery is re-embedded in the background; "
    "the old model matches until the new one is complete",
)
def start_switch(body: SwitchRequest, st: State, me: Admin) -> modelstate.SwitchStatus:
    return model_switch.runner(st).start(body.pack, me.actor)


@router.post("/switch/cancel", summary="Cancel the running switch (the active pack stays as it is)")
def cancel_switch(st: State, me: Admin) -> modelstate.SwitchStatus:
    return modelstate.cancel_switch(st.app, me.actor)


@router.post(
    "/{name}/install",
    summary="Install a pack from the server's configured source (VIGIL_MODEL_SOURCE_DIR, a mirror or "
    "the upstream URLs); files are checked against their pinned SHA-256",
)
def install(name: PackName, st: State, me: Admin) -> model_switch.PackView:
    return model_switch.install(st.app, name, me.actor)
