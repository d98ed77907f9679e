"""The FastAPI application: routers, problem+json errors, the web UI, the bus and the camera supervisor."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from vigil import __version__
from vigil.app import App
from vigil.core import memory
from vigil.core.config import Settings
from vigil.notify import Notifiers
from vigil.server import limits, model_switch, openapi, problems, refusal
from vigil.server.bus import EventBus
from vigil.server.deps import AnyRole, ServerState
from vigil.server.routers import (
    alarms,
    attendance,
    auth,
    backup,
    cameras,
    compare,
    compreface,
    devices,
    events,
    galleries,
    governance,
    health,
    investigation,
    metrics,
    models,
    recognition,
    redact,
    users,
    webhooks,
)
from vigil.server.scheduler import schedules
from vigil.server.supervisor import Supervisor
from vigil.video.cameras import list_cameras

if TYPE_CHECKING:
    from vigil.fleet.consumer import EventConsumer

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# The web UI loads only its own files: no inline script or style, no framing by other sites.
UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI's page (/docs only) starts itself with an inline script and styles itself inline.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(settings: Settings, *, start_cameras: bool | None = None) -> FastAPI:
    """The server. Cameras that are enabled start with it unless ``start_cameras`` is False."""
    memory.return_large_blocks()  # one large request must not keep the server's memory up
    vigil_app = App(settings)
    bus = EventBus()
    supervisor = Supervisor(settings, bus, vigil_app)
    st = ServerState(app=vigil_app, bus=bus, supervisor=supervisor)
    notifiers = st.extras["notifiers"] = Notifiers(vigil_app, bus)
    run_cameras = settings.start_cameras if start_cameras is None else start_cameras
    scheduled = st.extras["scheduled"] = schedules(vigil_app)
    model_switch.install_hooks(st)  # a switch left running goes on
    compare.install_hooks(st)  # so does a comparison
    consumer = _event_consumer(vigil_app, settings, bus)
    if consumer is not None:
        st.extras["consumer"] = consumer
        st.extras["registry"] = _registry(st, consumer)

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        vigil_app.db  # noqa: B018 - open and migrate the catalog before the first request
        notifiers.start()
        bus.start()
        if consumer is not None:
            consumer.start()
        supervisor.start()
        for job in scheduled:
            job.start()
        for hook in st.extras.get("on_start", []):
            hook(st)
        if run_cameras:
            for cam in list_cameras(vigil_app):
                if cam.enabled and cam.device is None:  # a device's cameras run on it
                    supervisor.start_camera(cam.name)
        try:
            yield
        finally:
            for job in scheduled:
                job.stop()
            supervisor.shutdown()
            if consumer is not None:
                consumer.stop()  # after the batch in hand: what it stored is acked
            for hook in st.extras.get("on_stop", []):
                hook(st)
            bus.stop()
            notifiers.stop()  # after the bus: its last events are sent or dead-lettered
            vigil_app.close()

    api = FastAPI(
        title="vigil",
        version=__version__,
        summary="Face recognition for video surveillance, with the safeguards built in.",
        description="Every endpoint but /api/health needs a browser session (log in at /api/auth/login; "
        "send the CSRF token in x-csrf-token on writes) or an API key (x-api-key header or "
        "Authorization: Bearer). Errors are RFC 9457 problem+json.",
        lifespan=lifespan,
        openapi_url=None,  # served below, behind a login like everything but the health check
        docs_url=None,
        redoc_url=None,
    )
    api.state.vigil = st
    problems.install(api)
    refusal.install(api)

    limits.install(api, settings)

    @api.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        csp = DOCS_CSP if request.url.path == "/docs" else UI_CSP
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    for module in (
        health,
        auth,
        users,
        galleries,
        cameras,
        alarms,
        attendance,
        events,
        recognition,
        compare,
        governance,
        backup,
        compreface,
        webhooks,
        metrics,
        investigation,
        models,
        devices,
        redact,
    ):
        api.include_router(module.router)

    _install_docs(api)
    openapi.install(api)

    if STATIC.is_dir():
        api.mount("/static", StaticFiles(directory=STATIC), name="static")

        @api.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    else:  # pragma: no cover - a broken install

        @api.get("/", include_in_schema=False)
        def no_ui() -> RedirectResponse:
            return RedirectResponse("/docs")

    return api


def _event_consumer(app: App, settings: Settings, bus: EventBus) -> EventConsumer | None:
    """With ``VIGIL_NATS_URL``: the consumer that stores the devices' events and puts each stored one
    on the bus (SSE, webhooks and MQTT see a device's alarms as any other), matching the sightings of
    devices that keep no templates (:mod:`vigil.fleet.central`). None: one box."""
    if not settings.nats_url:
        return None
    from vigil.fleet.central import CentralMatcher
    from vigil.fleet.consumer import EventConsumer

    return EventConsumer(app, settings, CentralMatcher(app, bus.publish))


def _registry(st: ServerState, consumer: EventConsumer) -> CollectorRegistry:
    """The metrics of /metrics: the cameras' and the consumer's (``vigil_fleet_*``)."""
    from vigil.fleet.consumer import ConsumerCollector

    registry = CollectorRegistry()
    registry.register(metrics.CameraCollector(st))
    registry.register(ConsumerCollector(consumer))
    return registry


def _install_docs(api: FastAPI) -> None:
    """The OpenAPI schema and Swagger UI, for logged-in users; the UI's assets come from the
    ``swagger-ui-bundle`` package (nothing is fetched from a CDN)."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html

    api.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @api.get("/openapi.json", include_in_schema=False)
    def openapi(_: AnyRole) -> dict[str, Any]:
        return api.openapi()

    @api.get("/docs", include_in_schema=False)
    def docs(_: AnyRole) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="vigil API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
