"""The worker's on-disk outbox: events wait here until the NATS server acknowledges them.

One SQLite file (WAL journal) holds the messages in the order they were put: the
:class:`~vigil.fleet.transport.Forwarder` puts each event's wire form, the
:class:`~vigil.fleet.transport.Publisher` peeks the oldest, publishes it, and acks it (deletes it) only
after JetStream's PubAck. A crash (``kill -9``, a power cut) leaves every item either in or out, never
half; what was published but not yet acked is sent again after a restart, and the server drops the
duplicate (JetStream's duplicate window on the message id, then the catalog's unique ``event_id``). So
delivery is at least once on the wire and exactly once in the catalog.

``synchronous=FULL``: each put is fsynced before ``put`` returns, so an event the pipeline handed over
survives a power cut on the pole, not only a crashed process (``NORMAL`` in WAL mode may lose the last
commits on power loss). The cost is one fsync per event, far below the rate a camera raises events;
acks of a drained batch share one transaction (:meth:`Outbox.ack` takes several sequence numbers).
``power_safe=False`` (``NORMAL``) still survives a killed process, and puts several times faster where
fsync is slow (an SD card), at the price of the last events before a power cut.

The cap (``max_bytes``, the setting ``VIGIL_OUTBOX_MAX_MB``) bounds the sum of the items' sizes (payload,
subject, message id and headers). When a put would go over it:

1. the oldest items that are not alarms are dropped first (sightings, attendance marks, camera status);
2. then, if that is not enough, the oldest alarms;
3. the item being put is never dropped to make room, unless it alone is larger than the cap: then
   ``put`` refuses it with an :class:`~vigil.core.errors.InputError` and nothing is dropped.

Each dropped item is counted per kind (event type), in the file, so the counts survive a restart;
they are exported as ``vigil_outbox_dropped_total{kind}`` beside ``vigil_outbox_depth`` and
``vigil_outbox_bytes`` (:class:`OutboxCollector`). An item the publisher has read but not yet acked
can be dropped too (it is then usually delivered anyway, and still counted). The SQLite file itself is
somewhat larger than the sum (pages, the WAL) and does not shrink when items go: the freed pages are
reused.

Example::

    box = Outbox(tmp_path / "outbox.sqlite3", max_bytes=64 << 20)
    seq = box.put("vigil.events.pole-17.gate", "e1", {"Vigil-Device": "pole-17"}, b"{...}", kind="alarm")
    [item] = box.peek(10)
    box.ack(item.seq)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vigil.core.errors import ConfigError, InputError

PRECIOUS_KIND = "alarm"
"""The kind dropped last when the outbox is full."""

ITEM_OVERHEAD_BYTES = 64
"""Added to each item's size: the row's own bookkeeping, so many tiny items still fill the cap."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL,
    precious INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_precious ON outbox (precious, seq);
CREATE TABLE IF NOT EXISTS outbox_dropped (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting to be published."""

    seq: int
    """Position in the outbox (increasing; never reused)."""
    subject: str
    msg_id: str
    """The NATS message id (``Nats-Msg-Id``): the event's id, so the server drops a resend."""
    headers: dict[str, str]
    payload: bytes
    kind: str
    created_at: float
    """Unix time of the put."""


def item_size(subject: str, msg_id: str, headers_json: str, payload: bytes) -> int:
    """Bytes an item counts against the cap."""
    return len(payload) + len(subject) + len(msg_id) + len(headers_json) + ITEM_OVERHEAD_BYTES


class Outbox:
    """A FIFO of messages in one SQLite file, with a size cap (see the module's docstring).

    ``power_safe``: fsync each put (``synchronous=FULL``, the default) or not (``NORMAL``).

    Thread-safe: the pipeline's threads put while the publisher's thread peeks and acks. One process
    owns the file (the worker); a second process opening it would share it safely but not the counts
    cached in memory.
    """

    def __init__(self, path: Path | str, max_bytes: int, *, power_safe: bool = True) -> None:
        if max_bytes <= 0:
            raise ConfigError(
                f"outbox cap must be positive, got {max_bytes} bytes", hint="VIGIL_OUTBOX_MAX_MB"
            )
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._nonempty = threading.Condition(self._lock)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if power_safe else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM outbox").fetchone()
            dropped = self._db.execute("SELECT kind, n FROM outbox_dropped").fetchall()
        except sqlite3.DatabaseError as e:
            raise ConfigError(
                f"the outbox {self.path} cannot be opened: {e}",
                hint="move the file away (its unsent events are lost) and start the worker again",
            ) from e
        self._depth, self._bytes = int(row[0]), int(row[1])
        self._dropped: dict[str, int] = {str(k): int(n) for k, n in dropped}

    # --- writing ---------------------------------------------------------------------------------

    def put(self, subject: str, msg_id: str, headers: dict[str, str], payload: bytes, kind: str) -> int:
        """Append one message; returns its sequence number. Makes room by the cap policy if needed.

        Raises InputError when the item alone is larger than the cap (nothing is dropped then).
        """
        headers_json = json.dumps(headers, separators=(",", ":"), sort_keys=True)
        size = item_size(subject, msg_id, headers_json, payload)
        if size > self.max_bytes:
            raise InputError(
                f"a {kind} event of {size} bytes is larger than the whole outbox ({self.max_bytes} bytes); "
                "it is refused",
                hint="raise VIGIL_OUTBOX_MAX_MB, or send smaller crops",
            )
        with self._lock:
            with self._transaction():
                freed = self._make_room(size)
                cur = self._db.execute(
                    "INSERT INTO outbox (subject, msg_id, headers, payload, kind, precious, size_bytes, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (subject, msg_id, headers_json, payload, kind, kind == PRECIOUS_KIND, size, time.time()),
                )
                seq = int(cur.lastrowid or 0)
            for _, dropped_kind, n in freed:  # committed: now the cached counts follow
                self._dropped[dropped_kind] = self._dropped.get(dropped_kind, 0) + 1
                self._depth -= 1
                self._bytes -= n
            self._depth += 1
            self._bytes += size
            self._nonempty.notify_all()
        return seq

    def ack(self, *seqs: int) -> int:
        """Delete the items with these sequence numbers (published and acknowledged); returns how many
        were still there (an item the cap dropped meanwhile is not)."""
        if not seqs:
            return 0
        with self._lock, self._transaction():
            marks = ",".join("?" * len(seqs))
            row = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM outbox WHERE seq IN ({marks})",  # noqa: S608
                seqs,
            ).fetchone()
            self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", seqs)  # noqa: S608
            self._depth -= int(row[0])
            self._bytes -= int(row[1])
        return int(row[0])

    # --- reading ---------------------------------------------------------------------------------

    def peek(self, limit: int = 100) -> list[OutboxItem]:
        """The oldest ``limit`` items, oldest first; they stay until acked."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, subject, msg_id, headers, payload, kind, created_at FROM outbox "
                "ORDER BY seq LIMIT ?",
                (max(int(limit), 1),),
            ).fetchall()
        return [
            OutboxItem(
                seq=int(r[0]),
                subject=str(r[1]),
                msg_id=str(r[2]),
                headers=dict(json.loads(r[3])),
                payload=bytes(r[4]),
                kind=str(r[5]),
                created_at=float(r[6]),
            )
            for r in rows
        ]

    def wait_for_items(self, timeout_s: float) -> bool:
        """Block until the outbox holds an item (True) or ``timeout_s`` passed (False)."""
        with self._nonempty:
            return self._nonempty.wait_for(lambda: self._depth > 0, timeout_s)

    def depth(self) -> int:
        """Items waiting."""
        return self._depth

    def size_bytes(self) -> int:
        """Bytes the waiting items count against the cap."""
        return self._bytes

    @property
    def dropped(self) -> dict[str, int]:
        """Items dropped by the cap so far, per kind (kept in the file across restarts)."""
        with self._lock:
            return dict(self._dropped)

    def stats(self) -> dict[str, object]:
        """Depth, bytes, cap and drops: what a heartbeat or a bench reports."""
        return {
            "depth": self.depth(),
            "bytes": self.size_bytes(),
            "max_bytes": self.max_bytes,
            "dropped": self.dropped,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- internals -------------------------------------------------------------------------------

    def _transaction(self) -> _Tx:
        return _Tx(self._db)

    def _make_room(self, size: int) -> list[tuple[int, str, int]]:
        """Delete the oldest items (not alarms first, then alarms) until ``size`` more bytes fit;
        returns the (seq, kind, size) of each dropped item. Runs inside the put's transaction."""
        need = self._bytes + size - self.max_bytes
        dropped: list[tuple[int, str, int]] = []
        for precious in (0, 1):
            if need <= 0:
                break
            cur = self._db.execute(
                "SELECT seq, kind, size_bytes FROM outbox WHERE precious = ? ORDER BY seq", (precious,)
            )
            for seq, kind, n in cur:
                dropped.append((int(seq), str(kind), int(n)))
                need -= int(n)
                if need <= 0:
                    break
            cur.close()
        if dropped:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(d[0],) for d in dropped])
            per_kind: dict[str, int] = {}
            for _, kind, _n in dropped:
                per_kind[kind] = per_kind.get(kind, 0) + 1
            self._db.executemany(
                "INSERT INTO outbox_dropped (kind, n) VALUES (?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET n = n + excluded.n",
                list(per_kind.items()),
            )
        return dropped


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


class OutboxCollector(Collector):
    """Prometheus metrics of one outbox; register it in the worker's ``CollectorRegistry``:
    ``vigil_outbox_depth``, ``vigil_outbox_bytes``, ``vigil_outbox_dropped_total{kind}``."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily("vigil_outbox_depth", "Events waiting in the worker's outbox")
        depth.add_metric([], self.outbox.depth())
        size = GaugeMetricFamily("vigil_outbox_bytes", "Bytes the waiting events count against the cap")
        size.add_metric([], self.outbox.size_bytes())
        cap = GaugeMetricFamily("vigil_outbox_max_bytes", "The outbox's size cap")
        cap.add_metric([], self.outbox.max_bytes)
        dropped = CounterMetricFamily(
            "vigil_outbox_dropped", "Events dropped because the outbox was full", labels=["kind"]
        )
        for kind, n in sorted(self.outbox.dropped.items()):
            dropped.add_metric([kind], n)
        yield from (depth, size, cap, dropped)
