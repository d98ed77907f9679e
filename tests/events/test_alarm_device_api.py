"""An alarm stored for an edge device is shown by a real server's GET /api/alarms with the device named."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType

from vigil.app import App
from vigil.core.config import Settings
from vigil.events.schemas import Alarm, AnyEvent
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.video.sinks import CatalogWriter
from vigil.video.watch import watch
from vigil.vision.image import load_image


def _harness() -> ModuleType:
    """tests/server/harness.py (its folder is not a package)."""
    name = "vigil_test_server_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parents[1] / "server" / "harness.py"
        )
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_get_alarms_names_the_device_that_raised_it(tmp_path: Path, engine, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "server"
    app = App(Settings(data_dir=data), engine_override=engine)
    stored: list[AnyEvent] = []
    try:
        spec = galleries.validate_spec(
            name="wanted",
            kind="watchlist",
            purpose="test",
            legal_basis="court order 12",
            authorized_by="Judge A",
            expires_on=date.today() + timedelta(days=30),
        )
        galleries.create_gallery(app, spec)
        photo = load_image(shared_data / "people" / "lin-manuel-miranda.png")
        enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [photo])
        clip = shared_data / "video" / "short_hamilton_clip.mp4"
        watch(
            app, str(clip), max_frames=150, sink=CatalogWriter(app, device="pole-17"), on_event=stored.append
        )
        watch(app, str(clip), max_frames=150)  # this server's own: no device
    finally:
        app.close()
    from_device = [e for e in stored if isinstance(e, Alarm)]
    assert from_device
    h = _harness()
    server = h.start_server(data)
    try:
        with server.client("operator") as c:
            r = c.get("/api/alarms", params={"limit": 1000})
            assert r.status_code == 200, r.text
            devices = {a["id"]: a["device"] for a in r.json()}
            alarm_id = from_device[0].alarm_id
            assert devices[alarm_id] == "pole-17"
            assert sorted(d for d in devices.values() if d) == ["pole-17"] * len(from_device)
            assert None in devices.values(), "an alarm of the server's own camera names no device"
            detail = c.get(f"/api/alarms/{alarm_id}").json()
            assert detail["device"] == "pole-17" and detail["crop_sha256"] == from_device[0].crop_sha256
    finally:
        h.stop_server(server)
