"""The server side of the transport with a real nats-server and a real catalog: events from a paired
device are stored once, a restarted consumer resumes where it left off, refused messages are counted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import ClassVar

import cv2
import nats
import pytest

from natsserver import NatsServer
from vigil.app import App
from vigil.events.schemas import Alarm, AnyEvent, CameraStatus, event_id_for, now_utc
from vigil.fleet import devices
from vigil.fleet.consumer import EventConsumer
from vigil.fleet.outbox import Outbox
from vigil.fleet.transport import MSG_ID_HEADER, Forwarder, Publisher, sign
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.storage.tables import AlarmRecord, Identity
from vigil.vision.image import load_image

STREAM = "VIGIL_EVENTS"


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def wanted(app: App, people: Path) -> tuple[int, bytes]:
    """A watchlist with Lin-Manuel Miranda; his identity id and a JPEG of his photo (the crop)."""
    spec = galleries.validate_spec(
        name="wanted",
        kind="watchlist",
        purpose="test",
        legal_basis="court order 12",
        authorized_by="Judge A",
        expires_on=date.today() + timedelta(days=30),
    )
    galleries.create_gallery(app, spec)
    photo = load_image(people / "lin-manuel-miranda.png")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [photo])
    with app.db.session() as s:
        identity_id = int(s.query(Identity.id).scalar())
    ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(people / "lin-manuel-miranda.png")))
    assert ok
    return identity_id, bytes(jpeg)


def pair(app: App, name: str) -> bytes:
    _, token = devices.add_device(app, name, site="market-street", actor="admin")
    return bytes.fromhex(devices.pair_device(app, token, version="test").signing_key)


def alarm(wanted: tuple[int, bytes], camera: str, i: int) -> Alarm:
    identity_id, crop = wanted
    return Alarm(
        event_id=event_id_for("alarm", camera, i),
        camera=camera,
        ts=now_utc(),
        identity="Lin-Manuel Miranda",
        identity_id=identity_id,
        gallery="wanted",
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


class Device:
    """A device's sending half: a forwarder and a publisher on its own outbox."""

    made: ClassVar[list[Device]] = []

    def __init__(self, tmp: Path, url: str, name: str, key: bytes) -> None:
        Device.made.append(self)
        self.box = Outbox(tmp / f"{name}.sqlite3", 64 << 20)
        self.fwd = Forwarder(self.box, name, key)
        self.pub = Publisher(self.box, url, stream=STREAM)

    def send(self, events: list[AnyEvent]) -> None:
        for e in events:
            self.fwd.write(e)
        if not self.pub.running:
            self.pub.start()
        assert self.pub.wait_drained(10), self.pub.stats()


@pytest.fixture(autouse=True)
def _stop_publishers() -> Iterator[None]:
    yield
    for d in Device.made:
        d.pub.stop()
    Device.made.clear()


@pytest.fixture
def consumers(
    app: App, nats_server: NatsServer
) -> Iterator[Callable[[], tuple[EventConsumer, list[AnyEvent]]]]:
    made: list[EventConsumer] = []
    settings = app.settings.model_copy(update={"nats_url": nats_server.url})

    def make() -> tuple[EventConsumer, list[AnyEvent]]:
        seen: list[AnyEvent] = []
        c = EventConsumer(app, settings, seen.append, batch=16).start()
        made.append(c)
        assert wait_for(lambda: (c.connected and c.stats().last_error is None) or c.stats().received > 0, 10)
        return c, seen

    yield make
    for c in made:
        c.stop()


def stored_alarms(app: App) -> list[AlarmRecord]:
    with app.db.session() as s:
        return list(s.query(AlarmRecord).order_by(AlarmRecord.id))


def publish_raw(url: str, subject: str, payload: bytes, headers: dict[str, str]) -> None:
    async def go() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().publish(subject, payload, stream=STREAM, headers=headers)
        finally:
            await nc.close()

    asyncio.run(go())


def test_a_paired_devices_events_are_stored_once_and_a_restart_resumes(
    app: App, wanted: tuple[int, bytes], nats_server: NatsServer, consumers, tmp_path: Path
) -> None:
    key = pair(app, "pole-17")
    consumer, seen = consumers()  # creates the stream
    dev = Device(tmp_path, nats_server.url, "pole-17", key)
    first = [alarm(wanted, f"cam{i % 2}", i) for i in range(12)]
    dev.send([*first, CameraStatus(camera="cam0", state="running", restarts=0)])
    assert wait_for(lambda: consumer.stats().stored == 13), consumer.stats()
    assert [e.event_id for e in seen if isinstance(e, Alarm)] == [a.event_id for a in first]
    assert all(e.alarm_id is not None and e.device == "pole-17" for e in seen if isinstance(e, Alarm))
    rows = stored_alarms(app)
    assert [r.event_id for r in rows] == [a.event_id for a in first]
    assert {r.device_name for r in rows} == {"pole-17"} and all(r.crop_sha256 for r in rows)
    assert app.blobs.get(rows[0].crop_sha256) == wanted[1]  # the crop travelled intact

    consumer.stop()  # the server goes away; the device keeps sending; the broker restarts too
    later = [alarm(wanted, "cam0", i) for i in range(12, 20)]
    dev.send(later)
    dev.pub.stop()
    nats_server.stop()
    nats_server.start()
    payload = first[0].model_dump_json().encode()  # a resend after the duplicate window: the catalog drops it
    publish_raw(
        nats_server.url,
        "vigil.events.pole-17.cam0",
        payload,
        {"Vigil-Device": "pole-17", "Vigil-Signature": sign(key, payload), MSG_ID_HEADER: "late-resend"},
    )
    again, seen2 = consumers()
    assert wait_for(lambda: again.stats().stored + again.stats().duplicates == 9), again.stats()
    assert again.stats().stored == 8 and again.stats().duplicates == 1 and again.stats().received == 9
    assert [e.event_id for e in seen2] == [a.event_id for a in later]
    assert [r.event_id for r in stored_alarms(app)] == [a.event_id for a in first + later]


def test_unknown_revoked_and_forged_messages_are_refused_and_do_not_block(
    app: App, wanted: tuple[int, bytes], nats_server: NatsServer, consumers, tmp_path: Path
) -> None:
    key = pair(app, "pole-17")
    revoked_key = pair(app, "pole-9")
    devices.revoke_device(app, "pole-9", actor="admin")
    devices.add_device(app, "pole-new", site=None, actor="admin")  # never paired
    consumer, seen = consumers()
    url = nats_server.url
    Device(tmp_path, url, "ghost", b"g" * 32).send([alarm(wanted, "c", 1)])
    Device(tmp_path, url, "pole-9", revoked_key).send([alarm(wanted, "c", 2)])
    Device(tmp_path, url, "pole-new", b"n" * 32).send([alarm(wanted, "c", 3)])
    Device(tmp_path, url, "pole-17", b"wrong" * 8).send([alarm(wanted, "c", 4)])
    good = alarm(wanted, "c", 5).model_dump_json().encode()
    publish_raw(url, "vigil.events.pole-17.c", good, {"Vigil-Signature": sign(key, good)})
    publish_raw(
        url, "vigil.events.pole-9x.c", good, {"Vigil-Device": "pole-17", "Vigil-Signature": sign(key, good)}
    )
    for junk in (b"not json", b'{"type": "alarm"}', b"\x00" * 100):
        publish_raw(
            url,
            "vigil.events.pole-17.c",
            junk,
            {"Vigil-Device": "pole-17", "Vigil-Signature": sign(key, junk)},
        )
    Device(tmp_path, url, "pole-17", key).send([alarm(wanted, "c", 6)])  # still flows
    odd = "pöle-" + "x" * 100  # a non-ASCII header, a hashed subject token: both ends agree
    Device(tmp_path, url, odd, pair(app, odd)).send([alarm(wanted, "c/ü.*", 7)])
    assert wait_for(lambda: consumer.stats().stored == 2), consumer.stats()
    assert consumer.stats().refused == {
        "unknown_device": 1,
        "revoked_device": 1,
        "unpaired_device": 1,
        "bad_signature": 1,
        "no_device": 1,
        "subject_mismatch": 1,
        "invalid_payload": 3,
    }
    rows = stored_alarms(app)
    assert [r.event_id for r in rows] == [alarm(wanted, "c", 6).event_id, alarm(wanted, "c/ü.*", 7).event_id]
    assert [r.device_name for r in rows] == ["pole-17", odd] and rows[1].camera_name == "c/ü.*"
    assert len(seen) == 2
    consumer.stop()
    again, _ = consumers()  # refused messages were terminated: nothing comes again
    time.sleep(1.0)
    assert again.stats().received == 0


_PUBLISHER = """
import sys, time
from vigil.fleet.outbox import Outbox
from vigil.fleet.transport import Publisher
pub = Publisher(Outbox(sys.argv[1], 1 << 30), sys.argv[2], stream=sys.argv[3], batch=20).start()
while True:
    print(pub.stats().sent, flush=True)
    time.sleep(0.002)
"""


def test_a_device_killed_mid_drain_then_restarted_stores_every_alarm_once(
    app: App, wanted: tuple[int, bytes], nats_server: NatsServer, consumers, tmp_path: Path
) -> None:
    key = pair(app, "pole-17")
    consumer, _ = consumers()
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, 1 << 30)
    events = [alarm(wanted, f"cam{i % 3}", i) for i in range(300)]
    fwd = Forwarder(box, "pole-17", key)
    for e in events:
        fwd.write(e)
    box.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _PUBLISHER, str(path), nats_server.url, STREAM], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        while int(proc.stdout.readline() or -1) < 60:
            assert proc.poll() is None, "the publisher process died"
    finally:
        proc.kill()
        proc.wait()
    dev = Device(tmp_path, nats_server.url, "pole-17", key)
    dev.box.close()
    dev.box = dev.pub.outbox = Outbox(path, 1 << 30)
    assert 0 < dev.box.depth() < 300
    dev.send([])
    dev.pub.stop()
    assert wait_for(lambda: consumer.stats().stored == 300, 20), consumer.stats()
    rows = stored_alarms(app)
    assert sorted(r.event_id for r in rows) == sorted(e.event_id for e in events)
    assert [r.event_id for r in rows] == [e.event_id for e in events]  # and in order


def test_a_failing_disk_holds_the_message_and_nothing_overtakes_it(
    app: App, wanted: tuple[int, bytes], nats_server: NatsServer, consumers, tmp_path: Path
) -> None:
    key = pair(app, "pole-17")
    consumer, seen = consumers()
    blobs = app.blobs.root
    blobs.mkdir(parents=True, exist_ok=True)
    aside = blobs.with_name("blobs-aside")
    blobs.rename(aside)
    blobs.write_bytes(b"")  # the blob folder is a file now: every crop write fails (an OSError)
    events = [alarm(wanted, "cam0", i) for i in range(5)]
    Device(tmp_path, nats_server.url, "pole-17", key).send(events)
    assert wait_for(lambda: consumer.stats().retried >= 2), consumer.stats()
    assert consumer.stats().stored == 0 and "trying again" in (consumer.stats().last_error or "")
    blobs.unlink()
    aside.rename(blobs)  # the disk is back
    assert wait_for(lambda: consumer.stats().stored == 5, 15), consumer.stats()
    assert [e.event_id for e in seen] == [e.event_id for e in events]  # in order: none overtook
    assert consumer.stats().refused == {}
