"""Search by photo (1:N, open set) and verify two photos (1:1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from vigil.gallery import matching
from vigil.server.deps import Live, Scope, State, read_upload

router = APIRouter(prefix="/api", tags=["recognition"])


@router.post("/search", summary="Identify every face of a photo in the galleries (1:N, open set)")
def search(
    st: State,
    me: Live,
    scope: Scope,
    file: Annotated[UploadFile | None, File(description="the probe photo")] = None,
    gallery: Annotated[
        list[str] | None,
        Query(description="galleries to search (default: all open; a gallery-bound key: its gallery)"),
    ] = None,
    top_k: Annotated[int, Query(ge=1, le=100)] = 5,
) -> matching.IdentifyResult:
    galleries = scope.galleries(gallery)
    image = read_upload(st, file)
    with st.face_lock:
        return matching.identify(st.app, image, galleries, top_k, actor=me.actor, action="search")


@router.post("/verify", summary="Are the faces of two photos the same person? (1:1)")
def verify(
    st: State,
    me: Live,
    file_a: Annotated[UploadFile | None, File()] = None,
    file_b: Annotated[UploadFile | None, File()] = None,
    largest: Annotated[bool, Form()] = False,
) -> matching.VerifyResult:
    a, b = read_upload(st, file_a, "file_a"), read_upload(st, file_b, "file_b")
    with st.face_lock:
        return matching.verify(st.app, a, b, largest=largest, actor=me.actor)
