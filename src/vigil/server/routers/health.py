"""The one endpoint anyone may call: is the server up, and is its catalog reachable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from vigil import __version__
from vigil.server.deps import State

router = APIRouter(tags=["health"])


@router.get("/api/health", summary="Liveness and catalog check (no login needed)")
def health(st: State) -> dict[str, Any]:
    with st.app.db.session() as s:
        s.execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__}
