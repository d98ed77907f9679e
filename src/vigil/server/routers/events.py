"""The live event stream (Server-Sent Events): alarms, sightings, camera status, reviews."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from vigil.events.schemas import public
from vigil.server.deps import Live, State, WholeServer

# The stream carries the events of every gallery and camera: no gallery-bound key reads it.
router = APIRouter(prefix="/api", tags=["events"], dependencies=[WholeServer])

KEEPALIVE_S = 15.0


@router.get(
    "/events",
    summary="Live events as text/event-stream (one JSON object per `data:` line, without crops or "
    "templates; `event:` is its type)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(request: Request, st: State, _: Live, types: str | None = None) -> StreamingResponse:
    wanted = {t.strip() for t in types.split(",")} if types else None
    q = st.bus.open_stream()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n: connected\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(q.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if wanted is not None and event.type not in wanted:
                    continue
                data = json.dumps(public(event), ensure_ascii=False)
                yield f"event: {event.type}\ndata: {data}\n\n".encode()
        finally:
            st.bus.close_stream(q)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
