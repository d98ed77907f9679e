"""The worker's outbox: order, the cap policy (alarms kept, others dropped first), counters, reopen, crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from vigil.core.errors import ConfigError, InputError
from vigil.fleet.outbox import Outbox, OutboxCollector, item_size

SUBJECT = "vigil.events.pole.cam"


def _size(msg_id: str, payload: bytes) -> int:
    return item_size(SUBJECT, msg_id, "{}", payload)


def _put(box: Outbox, msg_id: str, kind: str, n: int = 100) -> int:
    return box.put(SUBJECT, msg_id, {}, b"x" * n, kind)


def test_fifo_peek_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 1 << 20)
    seqs = [
        box.put(SUBJECT, f"m{i}", {"Vigil-Device": "pole"}, f"p{i}".encode(), "sighting") for i in range(5)
    ]
    assert seqs == sorted(seqs)
    items = box.peek(3)
    assert [i.msg_id for i in items] == ["m0", "m1", "m2"]
    assert items[0].headers == {"Vigil-Device": "pole"} and items[0].payload == b"p0"
    assert box.depth() == 5
    assert box.ack(items[0].seq, items[1].seq) == 2
    assert box.ack(items[0].seq) == 0  # already gone
    assert [i.msg_id for i in box.peek(10)] == ["m2", "m3", "m4"]
    assert box.depth() == 3
    hdr = '{"Vigil-Device":"pole"}'
    assert box.size_bytes() == sum(item_size(SUBJECT, f"m{i}", hdr, f"p{i}".encode()) for i in (2, 3, 4))


def test_cap_drops_oldest_non_alarms_first_then_alarms(tmp_path: Path) -> None:
    one = _size("a0", b"x" * 100)
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=4 * one)
    _put(box, "a0", "alarm")
    _put(box, "s0", "sighting_recorded")
    _put(box, "a1", "alarm")
    _put(box, "s1", "attendance_marked")
    assert box.size_bytes() == 4 * one and box.dropped == {}
    _put(box, "a2", "alarm")  # full: the oldest non-alarm goes
    assert [i.msg_id for i in box.peek(10)] == ["a0", "a1", "s1", "a2"]
    _put(box, "s2", "sighting_recorded")  # the next non-alarm goes (not the one being put)
    assert [i.msg_id for i in box.peek(10)] == ["a0", "a1", "a2", "s2"]
    _put(box, "a3", "alarm")
    _put(box, "a4", "alarm")  # only alarms left: the oldest alarm goes
    assert [i.msg_id for i in box.peek(10)] == ["a1", "a2", "a3", "a4"]
    assert box.dropped == {"sighting_recorded": 2, "attendance_marked": 1, "alarm": 1}
    assert box.depth() == 4 and box.size_bytes() == 4 * one


def test_a_big_put_drops_several(tmp_path: Path) -> None:
    one = _size("s0", b"x" * 100)
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=4 * one)
    for i in range(4):
        _put(box, f"s{i}", "sighting_recorded")
    _put(box, "a0", "alarm", n=100 + 2 * one)  # needs three items' room
    assert [i.msg_id for i in box.peek(10)] == ["s3", "a0"]
    assert box.dropped == {"sighting_recorded": 3}


def test_an_item_larger_than_the_cap_is_refused_and_drops_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=1000)
    _put(box, "s0", "sighting_recorded")
    with pytest.raises(InputError, match=r"larger than the whole outbox .*refused"):
        _put(box, "a0", "alarm", n=1000)
    assert [i.msg_id for i in box.peek(10)] == ["s0"] and box.dropped == {}


@pytest.mark.parametrize("cap", [0, -5])
def test_a_bad_cap_is_a_config_error(tmp_path: Path, cap: int) -> None:
    with pytest.raises(ConfigError, match="positive"):
        Outbox(tmp_path / "o.sqlite3", cap)


def test_survives_a_reopen_with_its_counters(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    one = _size("s0", b"x" * 100)
    box = Outbox(path, 2 * one)
    for i in range(3):
        _put(box, f"s{i}", "sighting_recorded")
    box.close()
    box = Outbox(path, 2 * one)
    assert [i.msg_id for i in box.peek(10)] == ["s1", "s2"]
    assert box.depth() == 2 and box.size_bytes() == 2 * one
    assert box.dropped == {"sighting_recorded": 1}
    seq = _put(box, "s3", "alarm")
    assert seq > box.peek(1)[0].seq


def test_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot be opened"):
        Outbox(path, 1000)


def test_hostile_strings_round_trip(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 1 << 20)
    headers = {"Vigil-Device": "pole\u00e9/17", "X": "a\x00b\nc"}
    box.put("vigil.events.p.c", "id'; DROP TABLE outbox;--", headers, b"\x00\xff" * 10, "alarm")
    [item] = box.peek(1)
    assert item.msg_id == "id'; DROP TABLE outbox;--" and item.headers == headers
    assert item.payload == b"\x00\xff" * 10


def test_metrics(tmp_path: Path) -> None:
    one = _size("s0", b"x" * 100)
    box = Outbox(tmp_path / "o.sqlite3", 2 * one)
    for i in range(3):
        _put(box, f"s{i}", "sighting_recorded")
    reg = CollectorRegistry()
    reg.register(OutboxCollector(box))
    text = generate_latest(reg).decode()
    assert "vigil_outbox_depth 2.0" in text
    assert f"vigil_outbox_bytes {float(2 * one)}" in text
    assert 'vigil_outbox_dropped_total{kind="sighting_recorded"} 1.0' in text


_CRASHER = """
import os, sys
from vigil.fleet.outbox import Outbox
box = Outbox(sys.argv[1], 1 << 30)
for i in range(100000):
    box.put("vigil.events.p.c", f"m{i}", {}, b"y" * 500, "alarm")
    if i == 200:
        print("ready", flush=True)
"""


def test_kill_9_mid_put_leaves_whole_items(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    proc.kill()
    proc.wait()
    box = Outbox(path, 1 << 30)
    items = box.peek(1_000_000)
    assert len(items) >= 201 and box.depth() == len(items)
    assert [i.msg_id for i in items] == [f"m{i}" for i in range(len(items))]
    assert all(i.payload == b"y" * 500 for i in items)
    assert box.size_bytes() == sum(item_size(i.subject, i.msg_id, "{}", i.payload) for i in items)
