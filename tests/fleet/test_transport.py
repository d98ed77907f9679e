"""The device side of the transport with a real nats-server: subjects, signatures, the publisher's
delivery across a broker that is down, goes away mid-drain, or a publisher killed with -9."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from natsserver import NatsServer, ensure_test_stream, stream_messages
from vigil.events.schemas import EVENT_ADAPTER, Alarm, CameraStatus, event_id_for, now_utc
from vigil.fleet.outbox import Outbox
from vigil.fleet.transport import (
    DEVICE_HEADER,
    MSG_ID_HEADER,
    SIGNATURE_HEADER,
    Forwarder,
    Publisher,
    event_subject,
    subject_token,
)

STREAM = "VIGIL_EVENTS"
KEY = b"k" * 32
HOSTILE = ["gate", "a.b", "*", ">", "gate 1", "x/y", "", "a_b", "a_5fb", "ü", "x" * 300, "\x00\r\n", "a.*.>"]


def alarm(camera: str, i: int, crop: bytes = b"\xff\xd8jpeg") -> Alarm:
    return Alarm(
        event_id=event_id_for("alarm", camera, i),
        camera=camera,
        ts=now_utc(),
        identity="person",
        identity_id=1,
        gallery="watch",
        score=0.9,
        threshold=0.5,
        fpir=0.01,
        model="m",
        track_id=i,
        frame=i,
        xyxy=[0.0, 0.0, 10.0, 10.0],
        quality=0.5,
        latency_ms=1.0,
        crop_jpeg=crop,
    )


def ids(msgs: list) -> list[str]:  # type: ignore[type-arg]
    return [m.headers[MSG_ID_HEADER] for m in msgs]


@pytest.fixture
def box(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", 64 << 20)


def test_subject_tokens_are_safe_and_distinct() -> None:
    tokens = [subject_token(n) for n in HOSTILE]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", t) for t in tokens), tokens
    assert len(set(tokens)) == len(HOSTILE)
    assert subject_token("gate-1") == "gate-1"
    assert event_subject("pole-17", "gate 1") == "vigil.events.pole-17.gate_201"
    assert event_subject("pole-17", None) == "vigil.events.pole-17._"


def test_forwarder_puts_the_signed_wire_form(box: Outbox) -> None:
    fwd = Forwarder(box, "pole-17", KEY)
    a = alarm("gate", 1)
    assert fwd.write(a) is a
    [item] = box.peek(10)
    assert item.msg_id == a.event_id and item.kind == "alarm"
    assert item.subject == "vigil.events.pole-17.gate"
    assert item.headers[DEVICE_HEADER] == "pole-17"
    assert item.headers[SIGNATURE_HEADER] == hmac.new(KEY, item.payload, hashlib.sha256).hexdigest()
    assert EVENT_ADAPTER.validate_json(item.payload) == a  # crops travel base64 and come back


@pytest.mark.parametrize(
    ("device", "key", "error"), [("", KEY, "empty"), ("p\n", KEY, "control"), ("p", b"", "key")]
)
def test_forwarder_refuses_bad_identity(box: Outbox, device: str, key: bytes, error: str) -> None:
    from vigil.core.errors import InputError

    with pytest.raises(InputError, match=error):
        Forwarder(box, device, key)


def test_an_event_larger_than_the_outbox_is_logged_not_raised(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 2000)
    fwd = Forwarder(box, "pole", KEY)
    fwd.write(alarm("gate", 1, crop=b"x" * 5000))
    assert fwd.refused == 1 and box.depth() == 0


def test_hostile_camera_names_each_reach_their_own_subject(nats_server: NatsServer, box: Outbox) -> None:
    ensure_test_stream(nats_server.url)
    fwd = Forwarder(box, "pole-17", KEY)
    for name in HOSTILE:
        fwd.write(CameraStatus(camera=name, state="running", restarts=0))
    pub = Publisher(box, nats_server.url, stream=STREAM).start()
    try:
        assert pub.wait_drained(10), pub.stats()
    finally:
        pub.stop()
    msgs = stream_messages(nats_server.url, STREAM)
    assert [m.subject for m in msgs] == [event_subject("pole-17", n) for n in HOSTILE]
    assert [EVENT_ADAPTER.validate_json(m.data).camera for m in msgs] == HOSTILE  # type: ignore[union-attr]


def test_broker_down_then_up_delivers_everything_once_in_order(tmp_path: Path, box: Outbox) -> None:
    srv = NatsServer(tmp_path / "js")  # not started: the link is down
    fwd = Forwarder(box, "pole", KEY)
    events = [alarm(f"cam{i % 3}", i) for i in range(60)]
    pub = Publisher(box, srv.url, stream=STREAM, backoff_max_s=0.5).start()
    try:
        for e in events:
            fwd.write(e)
        time.sleep(0.5)
        st = pub.stats()
        assert not st.connected and st.sent == 0 and st.depth == 60
        assert st.last_error is not None and "cannot connect" in st.last_error
        srv.start()  # the broker is back, but the server has not created the stream yet
        deadline = time.monotonic() + 5
        while "no stream" not in (pub.stats().last_error or "") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.stats().connected and box.depth() == 60, pub.stats()
        ensure_test_stream(srv.url)
        assert pub.wait_drained(10), pub.stats()
        assert pub.stats().sent == 60 and pub.stats().duplicates == 0
    finally:
        pub.stop()
    msgs = stream_messages(srv.url, STREAM)
    assert ids(msgs) == [e.event_id for e in events]
    srv.stop()


def test_link_drops_mid_drain_and_comes_back(nats_server: NatsServer, box: Outbox) -> None:
    ensure_test_stream(nats_server.url)
    fwd = Forwarder(box, "pole", KEY)
    events = [alarm(f"cam{i % 4}", i) for i in range(300)]
    pub = Publisher(box, nats_server.url, stream=STREAM, backoff_max_s=0.5).start()
    try:
        for e in events[:100]:
            fwd.write(e)
        assert pub.wait_drained(10)
        nats_server.stop()
        for e in events[100:]:
            fwd.write(e)
        time.sleep(1.0)
        assert box.depth() == 200 and not pub.stats().connected
        nats_server.start()
        assert pub.wait_drained(15), pub.stats()
    finally:
        pub.stop()
    assert ids(stream_messages(nats_server.url, STREAM)) == [e.event_id for e in events]


def test_jetstream_drops_a_republished_message_id(nats_server: NatsServer, box: Outbox) -> None:
    ensure_test_stream(nats_server.url)
    fwd = Forwarder(box, "pole", KEY)
    a, b = alarm("gate", 1), alarm("gate", 2)
    for e in (a, b, a):  # a replayed frame: the same deterministic event id again
        fwd.write(e)
    pub = Publisher(box, nats_server.url, stream=STREAM).start()
    try:
        assert pub.wait_drained(10)
        assert pub.stats().sent == 3 and pub.stats().duplicates == 1
    finally:
        pub.stop()
    assert ids(stream_messages(nats_server.url, STREAM)) == [a.event_id, b.event_id]


_PUBLISHER = """
import sys, time
from vigil.fleet.outbox import Outbox
from vigil.fleet.transport import Publisher
pub = Publisher(Outbox(sys.argv[1], 1 << 30), sys.argv[2], stream=sys.argv[3], batch=50).start()
while True:
    print(pub.stats().sent, flush=True)
    time.sleep(0.005)
"""


def test_a_publisher_killed_mid_drain_loses_nothing_and_duplicates_nothing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    ensure_test_stream(nats_server.url)
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, 1 << 30)
    fwd = Forwarder(box, "pole", KEY)
    events = [alarm(f"cam{i % 4}", i, crop=bytes(1000)) for i in range(1500)]
    for e in events:
        fwd.write(e)
    box.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _PUBLISHER, str(path), nats_server.url, STREAM], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        while int(proc.stdout.readline() or -1) < 300:
            assert proc.poll() is None, "the publisher process died"
    finally:
        proc.kill()
        proc.wait()
    box = Outbox(path, 1 << 30)
    left = box.depth()
    # Acks are committed a batch (50) at a time, after the batch's last PubAck: at least 250 of the
    # 300 sent are gone from the outbox; the rest of the 300 go again and JetStream drops them.
    assert 0 < left <= 1500 - 250
    pub = Publisher(box, nats_server.url, stream=STREAM).start()
    try:
        assert pub.wait_drained(20), pub.stats()
    finally:
        pub.stop()
    assert ids(stream_messages(nats_server.url, STREAM)) == [e.event_id for e in events]


def test_a_message_over_the_servers_max_payload_is_dropped_and_does_not_block(
    nats_server: NatsServer, box: Outbox
) -> None:
    ensure_test_stream(nats_server.url)
    fwd = Forwarder(box, "pole", KEY)
    events = [
        alarm("gate", 1),
        alarm("gate", 2, crop=bytes(1_200_000)),
        alarm("gate", 3),
    ]  # 1 MB: the default
    for e in events:
        fwd.write(e)
    pub = Publisher(box, nats_server.url, stream=STREAM).start()
    try:
        assert pub.wait_drained(10), pub.stats()
        assert pub.stats().too_large == 1 and pub.stats().sent == 2
    finally:
        pub.stop()
    assert ids(stream_messages(nats_server.url, STREAM)) == [events[0].event_id, events[2].event_id]


def test_a_publisher_that_never_connected_stops_at_once(box: Outbox) -> None:
    from natsserver import free_port

    pub = Publisher(box, f"nats://127.0.0.1:{free_port()}", stream=STREAM).start()
    time.sleep(0.3)
    t = time.monotonic()
    pub.stop()
    assert time.monotonic() - t < 1.0 and not pub.running and not pub.stats().connected
