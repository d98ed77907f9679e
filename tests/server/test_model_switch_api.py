"""Model packs and switching through the API of a real `vigil serve` (issue 13, item 6): the packs with
their licences, the refusals (roles, unknown or uninstalled packs, a second switch), a switch running
in the server's background with its progress, and a server killed with SIGKILL mid-switch that
resumes the switch when it starts again.

The server runs the ``custom`` pack of today (YuNet + MobileFaceNet, set by the legacy model settings)
and switches to ``dlib``, the two packs that need nothing installed."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import SHARED_DATA, Server, start_server, stop_server, wait_for
from sqlalchemy import func, select

from model_cards import write_mobilefacenet_card
from vigil.app import App
from vigil.core.config import Settings
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.server import model_switch
from vigil.server.bus import EventBus
from vigil.server.deps import ServerState
from vigil.storage.tables import Template
from vigil.vision.image import load_image
from vigil.vision.packs.active import record_initial_pack

MODELS = SHARED_DATA.parent / "models"


def custom_env(root: Path) -> dict[str, str]:
    """The environment of a server on the custom pack (and no network of its own)."""
    card = write_mobilefacenet_card(root / "mobilefacenet-test.json")
    return {
        "VIGIL_DETECTOR": "yunet",
        "VIGIL_EMBEDDER": "onnx",
        "VIGIL_ONNX_DETECTOR_PATH": str(MODELS / "face_detection_yunet_2023mar.onnx"),
        "VIGIL_ONNX_EMBEDDER_PATH": str(MODELS / "mobilefacenet.onnx"),
        "VIGIL_ONNX_EMBEDDER_CARD": str(card),
        "VIGIL_MODEL_DOWNLOAD": "false",
        "VIGIL_START_CAMERAS": "false",
        "VIGIL_THREADS": "1",
    }


def enrol_lfw(data_dir: Path, env: dict[str, str], n: int) -> None:
    """``n`` lfw-dev people (one photo each) enrolled with the custom pack, in-process."""
    settings = Settings(
        data_dir=data_dir,
        detector="yunet",
        embedder="onnx",
        onnx_detector_path=Path(env["VIGIL_ONNX_DETECTOR_PATH"]),
        onnx_embedder_path=Path(env["VIGIL_ONNX_EMBEDDER_PATH"]),
        onnx_embedder_card=Path(env["VIGIL_ONNX_EMBEDDER_CARD"]),
        threads=1,
    )
    people = sorted(p for p in (SHARED_DATA / "lfw-dev").iterdir() if p.is_dir())[:n]
    app = App(settings)
    try:
        galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
        todo = [(p.name, sorted(p.glob("*.jpg"))[:1]) for p in people]
        for outcome in enrolment.enroll_people(app, "staff", todo, load_image, largest=True):
            assert outcome.result is not None, outcome.errors
    finally:
        app.close()


def switch(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/api/models/switch")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, shared_models: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("models-api")
    env = custom_env(root)
    enrol_lfw(root / "data", env, 3)
    # Pack files come from a mirror that refuses connections: no install can reach a source.
    s = start_server(root / "data", {**env, "VIGIL_MODEL_MIRROR_URL": "http://127.0.0.1:9"})
    yield s
    stop_server(s)


def test_the_packs_with_their_licences_and_the_refusals(small: Server) -> None:
    with small.client("operator") as c:
        view = c.get("/api/models").json()
        assert c.get("/api/models/switch").status_code == 404  # none started yet
    packs = {p["name"]: p for p in view["packs"]}
    assert {"dlib", "custom", "edgeface-xs"} <= packs.keys()
    assert packs["dlib"]["installed"] and packs["dlib"]["licences"]
    assert packs["custom"]["installed"] and view["in_use"] == "custom" and view["active"] is None
    assert not packs["edgeface-xs"]["installed"] and "WebFace12M" in (packs["edgeface-xs"]["caveat"] or "")
    assert view["switch"] is None
    for role in ("supervisor", "operator", "auditor"):
        with small.client(role) as c:
            assert c.post("/api/models/switch", json={"pack": "dlib"}).status_code == 403
            assert c.post("/api/models/dlib/install").status_code == 403
            assert c.post("/api/models/switch/cancel").status_code == 403
    with small.client("admin") as c:
        for body, status, says in [
            ({"pack": "custom"}, 409, "already the active"),
            ({"pack": "edgeface-xs"}, 409, "not installed"),
            ({"pack": "no-such-pack"}, 404, "no model pack"),
        ]:
            r = c.post("/api/models/switch", json=body)
            assert r.status_code == status and says in r.json()["detail"], r.text
            assert r.headers["content-type"].startswith("application/problem+json")
        assert c.post("/api/models/switch", json={"pakc": "dlib"}).status_code == 422
        assert c.post("/api/models/switch/cancel").status_code == 409  # nothing runs
        assert c.post("/api/models/no-such-pack/install").status_code == 404
        assert c.post("/api/models/custom/install").status_code == 409  # the user's own files
        r = c.post("/api/models/dlib/install")  # always installed: nothing to do
        assert r.status_code == 200 and r.json()["installed"]


def _photos(data_dir: Path, model_id: str) -> tuple[int, int]:
    """(templates of ``model_id``, distinct photos they come from), read from the catalog."""
    app = App(Settings(data_dir=data_dir))
    try:
        with app.db.session() as s:
            rows = s.scalar(select(func.count(Template.id)).where(Template.model_id == model_id)) or 0
            distinct = s.execute(
                select(Template.identity_id, Template.source_sha256)
                .where(Template.model_id == model_id)
                .distinct()
            ).all()
        return int(rows), len(distinct)
    finally:
        app.close()


def test_a_switch_runs_in_the_background_and_resumes_after_kill_9(
    tmp_path: Path, shared_models: Path
) -> None:
    data = tmp_path / "data"
    env = custom_env(tmp_path)
    enrol_lfw(data, env, 120)
    server = start_server(data, env)
    try:
        with server.client("admin") as c:
            r = c.post("/api/models/switch", json={"pack": "dlib"})
            assert r.status_code == 202, r.text
            started = r.json()
            assert started["state"] == "running" and started["from_pack"] == "custom"
            assert (started["photos_total"], started["model_id"]) == (120, "dlib-resnet-v1")
            again = c.post("/api/models/switch", json={"pack": "dlib"})  # the same pack: the running one
            assert again.status_code == 202 and again.json()["id"] == started["id"]
            with server.client("operator") as op:  # anyone logged in follows the progress
                partway = wait_for(lambda: 16 <= switch(op)["photos_done"] < 100 and switch(op), 120, 0.1)
            assert partway["state"] == "running"
            assert c.get("/api/models").json()["active"] is None  # the old model still matches
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    killed_at = partway["photos_done"]

    t0 = time.monotonic()
    again_server = start_server(data, env, keys=server.keys)
    try:
        with again_server.client("admin") as c:
            done = wait_for(lambda: switch(c)["state"] != "running" and switch(c), 180, 0.3)
            assert done["state"] == "done" and done["id"] == started["id"], done
            assert done["photos_done"] == done["photos_total"] == 120
            view = c.get("/api/models").json()
            assert (view["active"], view["active_model_id"]) == ("dlib", "dlib-resnet-v1")
            flips = c.get("/api/audit", params={"action": "model_switch_flip"}).json()
            starts = c.get("/api/audit", params={"action": "model_switch_start"}).json()
            assert len(flips) == len(starts) == 1
            assert c.get("/api/audit/verify").json()["ok"]
        wait_for(lambda: "engine reloaded" in again_server.logs(), 30)
        assert "was left running: resuming it" in again_server.logs()
    finally:
        stop_server(again_server)
    templates, photos = _photos(data, "dlib-resnet-v1")
    assert templates == photos == 120 - done["photos_failed"]  # one each, no duplicates
    assert _photos(data, "mobilefacenet-test") == (120, 120)  # the old ones untouched
    print(f"killed at {killed_at} of 120; resumed and done in {time.monotonic() - t0:.0f} s")


def test_a_pack_that_cannot_be_fetched_is_a_conflict_that_says_why(small: Server) -> None:
    """The server's only source for the pack's files (a mirror) cannot be reached."""
    with small.client("admin") as c:
        r = c.post("/api/models/edgeface-xxs/install")
        assert r.status_code == 409, r.text
        assert "could not be installed" in r.json()["detail"] and "127.0.0.1:9" in r.json()["detail"]
        assert "--from DIR" in r.json()["hint"]
        assert not next(p for p in c.get("/api/models").json()["packs"] if p["name"] == "edgeface-xxs")[
            "installed"
        ]


def test_the_server_follows_a_switch_made_by_another_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`vigil models use` run beside the server: the server sees the active pack change and reloads."""
    settings = Settings(data_dir=tmp_path / "data", model_download=False)
    server_app, cli_app = App(settings), App(settings)
    try:
        st = ServerState(app=server_app, bus=EventBus(), supervisor=None)
        runner = model_switch.runner(st)
        runner.resume()  # at start: nothing to resume, no active pack recorded yet
        server_app.__dict__["engine"] = "loaded"  # stands for the engine in use (not built: not needed)
        runner.check_active()
        assert server_app.__dict__["engine"] == "loaded"  # nothing changed, nothing reloaded
        record_initial_pack(cli_app, "dlib", "dlib-resnet-v1", "cli:someone")
        with caplog.at_level("WARNING", logger="vigil.server.model_switch"):
            runner.check_active()
            runner.check_active()
        assert "engine" not in server_app.__dict__  # reloaded: the next use builds the active pack's
        assert [r.message for r in caplog.records] == [
            "another process made dlib the active pack; engine reloaded, 0 camera(s) restarted"
        ]
    finally:
        server_app.close()
        cli_app.close()
