"""Notifications over a real server: signed webhooks to real HTTP receivers (retries, dead letters),
MQTT to a real mosquitto broker (a broker that is down, then comes up), and a real alarm from the
hamilton clip reaching both."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from harness import Server, free_port, start_server, stop_server, wait_for
from paho.mqtt.enums import CallbackAPIVersion

from vigil.app import App
from vigil.core.config import Settings
from vigil.events.schemas import Alarm, AlarmReviewed, CameraOffline, CameraStatus
from vigil.notify.mqtt import BrokerAddress, Message, messages_for, topic_level
from vigil.notify.webhooks import list_dead_letters, sign, verify_signature

PROBLEM = "application/problem+json"
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
)
NO_MOSQUITTO = "mosquitto is not installed (apt-get install mosquitto)"
SECRET = "a webhook secret of some length"


# real receivers ------------------------------------------------------------------------------------
@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    valid: bool
    """The signature checked out under the secret the receiver was told."""

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver:
    """A real HTTP server on a free port. Each path answers the statuses of its script in turn, the
    last one repeating (default 200), and checks signatures with ``verify_signature``."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.scripts: dict[str, list[int]] = {}
        self.secrets: dict[str, str] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    script = receiver.scripts.get(self.path, [200])
                    status = script.pop(0) if len(script) > 1 else script[0]
                    secret = receiver.secrets.get(self.path, "")
                valid = verify_signature(
                    secret, headers.get("x-vigil-timestamp", ""), body, headers.get("x-vigil-signature", "")
                )
                with receiver._lock:
                    receiver.hits.append(Hit(self.path, headers, body, status, valid))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def route(self, path: str, secret: str, *statuses: int) -> str:
        """The URL of ``path``, answering ``statuses`` (default 200) and checking ``secret``."""
        with self._lock:
            self.scripts[path] = list(statuses or (200,))
            self.secrets[path] = secret
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_mosquitto(port: int) -> subprocess.Popen[bytes]:
    assert MOSQUITTO is not None
    proc = subprocess.Popen(
        [MOSQUITTO, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: proc.poll() is not None or _port_open(port), timeout_s=15, interval_s=0.05)
    if proc.poll() is not None:
        raise RuntimeError(f"mosquitto exited with {proc.returncode}")
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class Subscriber:
    """A real paho client subscribed to ``vigil/#``, keeping every message it receives."""

    def __init__(self, port: int, topic: str = "vigil/#") -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def on(self, topic: str) -> list[str]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def last(self, topic: str) -> str | None:
        got = self.on(topic)
        return got[-1] if got else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def broker_port() -> Iterator[int | None]:
    """A real mosquitto on a free port, or None when it is not installed (MQTT tests then skip)."""
    if MOSQUITTO is None:
        yield None
        return
    port = free_port()
    proc = start_mosquitto(port)
    yield port
    stop_process(proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, broker_port: int | None) -> Iterator[Server]:
    """A server with fast webhook retries, publishing to the broker when there is one."""
    env = {"VIGIL_WEBHOOK_BACKOFF_S": "0.1", "VIGIL_WEBHOOK_TIMEOUT_S": "3"}
    if broker_port is not None:
        env["VIGIL_MQTT_URL"] = f"mqtt://127.0.0.1:{broker_port}"
    s = start_server(tmp_path_factory.mktemp("notify"), env=env)
    yield s
    stop_server(s)


@pytest.fixture
def subscriber(broker_port: int | None) -> Iterator[Subscriber]:
    if broker_port is None:
        pytest.skip(NO_MOSQUITTO)
    sub = Subscriber(broker_port)
    yield sub
    sub.close()


@pytest.fixture
def hooks(server: Server) -> Iterator[Callable[..., dict[str, Any]]]:
    """``hooks(url, **spec)`` registers a webhook (201 checked); they are all removed after the test, so
    that later tests' events do not reach them."""
    created: list[int] = []
    admin = server.client("admin")

    def create(url: str, **spec: Any) -> dict[str, Any]:
        r = admin.post("/api/webhooks", json={"url": url, **spec})
        assert r.status_code == 201, r.text
        created.append(r.json()["id"])
        return r.json()  # type: ignore[no-any-return]

    yield create
    for webhook_id in created:
        admin.delete(f"/api/webhooks/{webhook_id}")
    admin.close()


def assert_problem(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    text = (r.json()["detail"] + r.json().get("hint", "")).lower()
    assert all(w in text for w in words), r.json()


def dead_letters(server: Server, webhook_id: int) -> list[dict[str, Any]]:
    with server.client("admin") as c:
        r = c.get("/api/webhooks/dead-letters", params={"channel": f"webhook:{webhook_id}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# the helpers, on their own -------------------------------------------------------------------------
def test_verify_signature() -> None:
    body = b'{"type":"alarm","camera":"gate"}'
    now = int(time.time())
    header = sign(SECRET, now, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, now, body, header)
    assert verify_signature(SECRET, str(now), body.decode(), header)
    assert not verify_signature("another secret", now, body, header)
    assert not verify_signature(SECRET, now, body + b" ", header)
    assert not verify_signature(SECRET, now + 1, body, header)
    assert not verify_signature(SECRET, "yesterday", body, header)
    stale = now - 600
    assert not verify_signature(SECRET, stale, body, sign(SECRET, stale, body))
    assert verify_signature(SECRET, stale, body, sign(SECRET, stale, body), tolerance_s=900)


@pytest.mark.parametrize(
    ("name", "level"),
    [("gate", "gate"), ("gate/north", "gate_north"), ("a+b#c", "a_b_c"), ("", "_"), ("hall 2", "hall 2")],
)
def test_camera_names_are_safe_topic_levels(name: str, level: str) -> None:
    assert topic_level(name) == level


def test_messages_for_events() -> None:
    now = datetime.now(UTC)
    alarm = Alarm(
        camera="gate/1",
        ts=now,
        identity="x",
        identity_id=1,
        gallery="g",
        score=0.9,
        threshold=0.5,
        fpir=0.01,
        model="m",
        track_id=1,
        frame=2,
        xyxy=[0, 0, 1, 1],
        quality=0.5,
        latency_ms=1.0,
        crop_jpeg=b"\xff\xd8crop",
        thumbnail_jpeg=b"\xff\xd8thumb",
    )
    messages = messages_for("vigil", alarm)
    assert [m.topic for m in messages] == ["vigil/events", "vigil/alarms", "vigil/gate_1/alarms"]
    body = json.loads(messages[0].payload)
    assert body["event_id"] == alarm.event_id and body["version"] == alarm.version
    assert "crop_jpeg" not in body and "thumbnail_jpeg" not in body, "no crops on MQTT"
    status = messages_for("site/vigil", CameraStatus(camera="c", state="running", restarts=0))
    assert status[-1] == Message("site/vigil/c/status", "running", retain=True)
    offline = CameraOffline(camera="c", ts=now, reason="gone", retry_in_s=1.0)
    assert messages_for("v", offline)[-1].payload == "offline"
    reviewed = AlarmReviewed(
        camera="c",
        alarm_id=1,
        action="confirm",
        state="confirmed",
        confirmations=1,
        confirmations_required=1,
        by="user:a",
    )
    assert [m.topic for m in messages_for("v", reviewed)] == ["v/events"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", "mqtt://127.0.0.1:1883"),
        ("mqtts://broker.example:8884", "mqtts://broker.example:8884"),
        ("mqtt://user:p%40ss@h:1", "mqtt://h:1"),
        ("http://broker:1883", "ConfigError"),
        ("mqtt://", "ConfigError"),
        ("mqtt://h:notaport", "ConfigError"),
    ],
)
def test_broker_urls(url: str, expected: str) -> None:
    from vigil.core.errors import ConfigError

    if expected == "ConfigError":
        with pytest.raises(ConfigError, match="VIGIL_MQTT_URL"):
            BrokerAddress.parse(url)
    else:
        assert str(BrokerAddress.parse(url)) == expected


# webhooks over the real server ---------------------------------------------------------------------
Hooks = Callable[..., dict[str, Any]]


def test_signed_test_delivery(server: Server, receiver: Receiver, hooks: Hooks) -> None:
    hook = hooks(receiver.route("/signed", SECRET), event_types=["alarm"], secret=SECRET)
    with server.client("admin") as c:
        assert hook["secret"] == SECRET and hook["event_types"] == ["alarm"] and hook["enabled"]
        listed = c.get("/api/webhooks").json()
        assert any(w["id"] == hook["id"] for w in listed) and all("secret" not in w for w in listed)
        sent = c.post(f"/api/webhooks/{hook['id']}/test")
        assert sent.status_code == 202, sent.text
    hit = wait_for(lambda: receiver.at("/signed"), timeout_s=20)[0]
    assert hit.valid
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["x-vigil-event"] == "test"
    assert hit.headers["x-vigil-delivery"] == sent.json()["delivery"]
    assert abs(int(hit.headers["x-vigil-timestamp"]) - time.time()) < 60
    assert hit.event["type"] == "test" and hit.event["webhook_id"] == hook["id"]
    ts, sig = hit.headers["x-vigil-timestamp"], hit.headers["x-vigil-signature"]
    assert verify_signature(SECRET, ts, hit.body, sig)
    assert not verify_signature("not the secret of this hook", ts, hit.body, sig)
    assert not verify_signature(SECRET, ts, hit.body.replace(b"test", b"tost"), sig)


def test_generated_secret_is_returned_once_and_signs(
    server: Server, receiver: Receiver, hooks: Hooks
) -> None:
    hook = hooks(receiver.route("/generated", ""), event_types=["*"])
    with server.client("admin") as c:
        assert len(hook["secret"]) >= 32 and hook["event_types"] == ["*"]
        receiver.route("/generated", hook["secret"])
        assert c.post(f"/api/webhooks/{hook['id']}/test").status_code == 202
    assert wait_for(lambda: receiver.at("/generated"), timeout_s=20)[0].valid


def test_failed_attempts_are_retried_until_delivered(
    server: Server, receiver: Receiver, hooks: Hooks
) -> None:
    hook = hooks(receiver.route("/flaky", SECRET, 500, 500, 200), secret=SECRET)
    with server.client("admin") as c:
        delivery = c.post(f"/api/webhooks/{hook['id']}/test").json()["delivery"]
    hits = wait_for(lambda: (h := receiver.at("/flaky")) and h[-1].status == 200 and h, timeout_s=30)
    assert [h.status for h in hits] == [500, 500, 200]
    assert {h.headers["x-vigil-delivery"] for h in hits} == {delivery}
    assert all(h.valid for h in hits)
    assert dead_letters(server, hook["id"]) == []


def test_undeliverable_events_become_dead_letters(server: Server, receiver: Receiver, hooks: Hooks) -> None:
    down = hooks(receiver.route("/down", SECRET, 503))
    gone = hooks(f"http://127.0.0.1:{free_port()}/nobody-listens", enabled=False)  # tests still go
    with server.client("admin") as c:
        for hook in (down, gone):
            assert c.post(f"/api/webhooks/{hook['id']}/test").status_code == 202
    letter = wait_for(lambda: dead_letters(server, down["id"]), timeout_s=30)[0]
    assert letter["attempts"] == 5 and letter["last_error"] == "HTTP 503"
    assert letter["target"] == down["url"] and letter["event_type"] == "test"
    assert letter["payload"]["type"] == "test" and letter["channel"] == f"webhook:{down['id']}"
    assert len(receiver.at("/down")) == 5
    unreachable = wait_for(lambda: dead_letters(server, gone["id"]), timeout_s=30)[0]
    assert unreachable["attempts"] == 5 and "Connect" in unreachable["last_error"]


def test_change_and_delete(server: Server, receiver: Receiver, hooks: Hooks) -> None:
    hook = hooks(receiver.route("/changed", SECRET))
    with server.client("admin") as c:
        r = c.patch(f"/api/webhooks/{hook['id']}", json={"enabled": False})
        assert r.status_code == 200 and r.json()["enabled"] is False
        r = c.patch(f"/api/webhooks/{hook['id']}", json={"event_types": ["camera_status", "alarm"]})
        assert r.json()["event_types"] == ["camera_status", "alarm"] and r.json()["enabled"] is False
        assert_problem(
            c.patch(f"/api/webhooks/{hook['id']}", json={"event_types": ["alarms"]}), 422, "alarms"
        )
        assert_problem(c.patch(f"/api/webhooks/{hook['id']}", json={"event_types": []}), 422, "event type")
        assert c.delete(f"/api/webhooks/{hook['id']}").status_code == 200
        assert all(w["id"] != hook["id"] for w in c.get("/api/webhooks").json())
        assert_problem(c.delete(f"/api/webhooks/{hook['id']}"), 404)
        assert_problem(c.patch(f"/api/webhooks/{hook['id']}", json={"enabled": True}), 404)
        assert_problem(c.post(f"/api/webhooks/{hook['id']}/test"), 404)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"url": "ftp://example.org/hook"}, ["http(s)"]),
        ({"url": "file:///etc/passwd"}, ["http(s)"]),
        ({"url": "javascript:alert(1)"}, ["http(s)"]),
        ({"url": "example.org/hook"}, ["http(s)"]),
        ({"url": "http://example.org/hook", "event_types": ["everything"]}, ["everything"]),
        ({"url": "http://example.org/hook", "secret": "short"}, ["secret"]),
        ({"url": "http://example.org/hook", "events": ["alarm"]}, ["events"]),
    ],
)
def test_bad_webhooks_are_refused(server: Server, body: dict[str, Any], words: list[str]) -> None:
    with server.client("admin") as c:
        before = c.get("/api/webhooks").json()
        assert_problem(c.post("/api/webhooks", json=body), 422, *words)
        assert c.get("/api/webhooks").json() == before


@pytest.mark.parametrize("who", ["supervisor", "operator", "auditor"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/webhooks"),
        ("POST", "/api/webhooks"),
        ("PATCH", "/api/webhooks/1"),
        ("DELETE", "/api/webhooks/1"),
        ("POST", "/api/webhooks/1/test"),
        ("GET", "/api/webhooks/dead-letters"),
    ],
)
def test_only_admins_manage_webhooks(server: Server, who: str, method: str, path: str) -> None:
    body = {"url": "http://example.org/hook"} if method in ("POST", "PATCH") else None
    with server.client(who) as c:
        r = c.request(method, path, json=body)
    assert_problem(r, 403, who)


# MQTT ----------------------------------------------------------------------------------------------
def test_server_announces_itself_on_mqtt(server: Server, subscriber: Subscriber) -> None:
    assert wait_for(lambda: subscriber.last("vigil/available"), timeout_s=20) == "online"
    assert ("vigil/available", "online", True) in subscriber.messages  # retained for late subscribers


@pytest.mark.slow
def test_broker_down_at_start_then_up(tmp_path: Path, receiver: Receiver) -> None:
    """The server starts and serves while its broker is down, connects when the broker comes up, and
    says "offline" when it stops cleanly."""
    if MOSQUITTO is None:
        pytest.skip(NO_MOSQUITTO)
    port = free_port()
    env = {"VIGIL_MQTT_URL": f"mqtt://127.0.0.1:{port}", "VIGIL_WEBHOOK_BACKOFF_S": "600"}
    server = start_server(tmp_path / "data", env=env)
    broker = None
    try:
        with server.client("admin") as c:
            t0 = time.monotonic()
            assert c.get("/api/webhooks").status_code == 200
            hook = c.post(
                "/api/webhooks", json={"url": receiver.route("/broker-down", SECRET), "secret": SECRET}
            ).json()
            assert c.post(f"/api/webhooks/{hook['id']}/test").status_code == 202
            assert time.monotonic() - t0 < 5
            # a delivery waiting for its retry (in 10 minutes) when the server stops
            hook = c.post("/api/webhooks", json={"url": receiver.route("/retry-at-stop", SECRET, 500)}).json()
            assert c.post(f"/api/webhooks/{hook['id']}/test").status_code == 202
        assert wait_for(lambda: receiver.at("/broker-down"), timeout_s=20)[0].valid
        wait_for(lambda: receiver.at("/retry-at-stop"), timeout_s=20)
        wait_for(lambda: "cannot reach the broker" in server.logs(), timeout_s=20)
        broker = start_mosquitto(port)
        sub = Subscriber(port)
        try:
            assert wait_for(lambda: sub.last("vigil/available"), timeout_s=60) == "online"
            stop_server(server)
            # uvicorn exits by the signal it stopped on, once the shutdown is complete
            assert server.process.returncode in (0, -signal.SIGTERM), server.logs()
            assert "Application shutdown complete" in server.logs()
            assert wait_for(lambda: sub.last("vigil/available") == "offline", timeout_s=20)
        finally:
            sub.close()
        assert "Traceback" not in server.logs()
        app = App(Settings(data_dir=server.data_dir))
        try:
            (letter,) = list_dead_letters(app)
        finally:
            app.close()
        assert letter.target.endswith("/retry-at-stop") and letter.attempts == 1
        assert "HTTP 500" in letter.last_error and "stopped" in letter.last_error
    finally:
        stop_server(server)
        if broker is not None:
            stop_process(broker)


EXPIRES = (date.today() + timedelta(days=30)).isoformat()
CAMERA = "stage+1"
"""A camera name with an MQTT wildcard: its topics use ``stage_1``."""


@pytest.mark.slow
def test_real_alarm_reaches_mqtt_and_webhooks(
    server: Server, subscriber: Subscriber, receiver: Receiver, shared_data: Path, hooks: Hooks
) -> None:
    hooks(receiver.route("/alarms-only", SECRET), secret=SECRET, event_types=["alarm"])
    hooks(receiver.route("/everything", SECRET), secret=SECRET, event_types=["*"])
    hooks(receiver.route("/disabled", SECRET), secret=SECRET, event_types=["*"], enabled=False)
    with server.client("admin") as c:
        watchlist = {
            "name": "notify-watch",
            "kind": "watchlist",
            "purpose": "test",
            "legal_basis": "test order 1",
            "authorized_by": "test judge",
            "expires_on": EXPIRES,
        }
        assert c.post("/api/galleries", json=watchlist).status_code == 201
        photo = shared_data / "people" / "lin-manuel-miranda.png"
        with photo.open("rb") as fh:
            r = c.post(
                "/api/galleries/notify-watch/identities",
                data={"identity": "Lin-Manuel Miranda"},
                files=[("files", (photo.name, fh, "image/png"))],
            )
        assert r.status_code == 201, r.text
        clip = shared_data / "video" / "short_hamilton_clip.mp4"
        r = c.post("/api/cameras", json={"name": CAMERA, "url": str(clip)})
        assert r.status_code == 201, r.text

    assert wait_for(lambda: subscriber.last("vigil/available"), timeout_s=20) == "online"
    alarm = json.loads(wait_for(lambda: subscriber.last("vigil/alarms"), timeout_s=90))
    assert alarm["type"] == "alarm" and alarm["camera"] == CAMERA
    assert alarm["event_id"] and alarm["version"] >= 2 and "crop_jpeg" not in alarm, "no crops on MQTT"
    assert alarm["identity"] == "Lin-Manuel Miranda" and alarm["gallery"] == "notify-watch"
    assert alarm["score"] >= alarm["threshold"]
    assert json.loads(wait_for(lambda: subscriber.last("vigil/stage_1/alarms"), timeout_s=10)) == alarm

    hit = wait_for(lambda: receiver.at("/alarms-only"), timeout_s=30)[0]
    assert hit.valid and hit.headers["x-vigil-event"] == "alarm"
    assert hit.event["alarm_id"] == alarm["alarm_id"] and hit.event["identity"] == "Lin-Manuel Miranda"
    assert hit.event["event_id"] == alarm["event_id"] and "thumbnail_jpeg" not in hit.event

    # the clip plays to its end: every event has been published by then
    wait_for(lambda: subscriber.last("vigil/stage_1/status") == "finished", timeout_s=120)
    statuses = subscriber.on("vigil/stage_1/status")
    assert "running" in statuses
    events = [json.loads(p) for p in subscriber.on("vigil/events")]
    assert {"alarm", "camera_status", "sighting_started", "sighting_ended"} <= {e["type"] for e in events}

    everything = wait_for(
        lambda: (
            (h := receiver.at("/everything")) and any(x.event.get("state") == "finished" for x in h) and h
        ),
        timeout_s=30,
    )
    assert all(h.valid for h in everything)
    assert {"alarm", "camera_status"} <= {h.headers["x-vigil-event"] for h in everything}
    assert {h.headers["x-vigil-event"] for h in receiver.at("/alarms-only")} == {"alarm"}
    assert receiver.at("/disabled") == []
