"""The device side of the fleet transport: events go into the outbox, a publisher drains it to NATS.

- :class:`Forwarder` is the edge worker's :class:`~vigil.video.sinks.Sink`: it signs each event's wire
  form and puts it in the :class:`~vigil.fleet.outbox.Outbox` (fsynced), then returns the event.
- :class:`Publisher` is a thread with its own asyncio loop: it connects to NATS (and reconnects
  forever), publishes the outbox's items oldest first to JetStream, waits for each PubAck and only then
  acks (deletes) the item. A failure is retried with a back-off from the same item, so the order per
  camera (indeed for the whole device) is kept and nothing is skipped.
- :func:`ensure_stream` creates or updates the stream (the server does it; a device only publishes).

Subjects are ``vigil.events.<device>.<camera>`` with each part made safe by :func:`subject_token`.
The NATS message id (``Nats-Msg-Id``) is the event's ``event_id``; headers ``Vigil-Device`` (the
device's name) and ``Vigil-Signature`` (HMAC-SHA256 of the payload with the device's signing key, hex)
let the server refuse what a device did not sign.

Example::

    box = Outbox(data_dir / "outbox.sqlite3", max_bytes=2 << 30)
    sink = Forwarder(box, "pole-17", signing_key)
    pub = Publisher(box, "nats://server:4222", stream="VIGIL_EVENTS").start()
    sink.write(alarm)  # returns at once; the publisher sends it when the link is up
    pub.stats().depth, pub.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import threading
import time
import uuid
from typing import Self

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from pydantic import BaseModel

from vigil.core.errors import InputError
from vigil.events.schemas import AnyEvent
from vigil.fleet.outbox import Outbox, OutboxItem

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "vigil.events"
DEVICE_HEADER = "Vigil-Device"
SIGNATURE_HEADER = "Vigil-Signature"
MSG_ID_HEADER = "Nats-Msg-Id"

DUPLICATE_WINDOW_S = 2 * 3600.0
"""How long JetStream remembers message ids to drop a resend. It covers what a worker sends again
after a restart or a reconnect (items published whose PubAck it never saw: seconds to minutes later).
A resend after a longer outage is stored in the stream twice, and the catalog's unique ``event_id``
drops it then. The server keeps each id of the window in memory (roughly 100 bytes each: at 1,000
events/s a 2 h window holds 7.2 M ids, about 0.7 GB); a shorter window is safe for the same reason."""

STREAM_MAX_AGE_S = 7 * 86400.0
"""Events older than this leave the stream even if no server consumed them (a server down a week)."""

_TOKEN_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_TOKEN_MAX = 64


def subject_token(name: str) -> str:
    """``name`` as one NATS subject token: only ``[A-Za-z0-9_-]``.

    Letters, digits and ``-`` stay; every other byte of the UTF-8 form (``_`` included) becomes ``_``
    and two hex digits, so different names give different tokens. A token longer than 64 characters
    keeps its first 40 and a digest of the whole name. The empty name is ``_``.

    >>> subject_token("gate-1"), subject_token("gate 1.north/*"), subject_token("a_b")
    ('gate-1', 'gate_201_2enorth_2f_2a', 'a_5fb')
    """
    if not name:
        return "_"
    token = "".join(c if c in _TOKEN_SAFE else "".join(f"_{b:02x}" for b in c.encode()) for c in name)
    if len(token) > _TOKEN_MAX:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        token = f"{token[:40]}-{digest}"
    return token


def event_subject(device: str, camera: str | None) -> str:
    """``vigil.events.<device>.<camera>``, each part a :func:`subject_token`."""
    return f"{SUBJECT_PREFIX}.{subject_token(device)}.{subject_token(camera or '')}"


def sign(key: bytes, payload: bytes) -> str:
    """HMAC-SHA256 of ``payload`` with ``key``, hex."""
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


class Forwarder:
    """The edge worker's sink: each event's signed wire form goes into the outbox; returns the event.

    Args:
        outbox: where the messages wait for the publisher.
        device: this device's name (the ``Vigil-Device`` header and the subject's second token).
        signing_key: the key the server gave at pairing (raw bytes, not hex).
    """

    def __init__(self, outbox: Outbox, device: str, signing_key: bytes) -> None:
        if not device or any(ord(c) < 32 or ord(c) == 127 for c in device):
            raise InputError(f"device name {device!r} is empty or holds control characters")
        if not signing_key:
            raise InputError("the signing key is empty", hint="pair the device again")
        self.outbox = outbox
        self.device = device
        self.signing_key = signing_key
        self.forwarded = 0
        self.refused = 0
        """Events too large for the whole outbox (logged; they cannot be sent)."""

    def write(self, event: AnyEvent) -> AnyEvent:
        payload = event.model_dump_json().encode()
        msg_id = getattr(event, "event_id", None) or uuid.uuid4().hex
        headers = {DEVICE_HEADER: self.device, SIGNATURE_HEADER: sign(self.signing_key, payload)}
        subject = event_subject(self.device, getattr(event, "camera", None))
        try:
            self.outbox.put(subject, msg_id, headers, payload, kind=event.type)
        except InputError as e:
            self.refused += 1
            log.error("event %s (%s) not forwarded: %s", msg_id, event.type, e)
            return event
        self.forwarded += 1
        return event


async def ensure_stream(
    js: JetStreamContext,
    name: str,
    *,
    max_age_s: float = STREAM_MAX_AGE_S,
    max_bytes: int = -1,
    duplicate_window_s: float = DUPLICATE_WINDOW_S,
) -> StreamInfo:
    """Create the events stream, or bring an existing one to this configuration.

    Subjects ``vigil.events.>``, file storage, limits retention (acked events stay until ``max_age_s``
    or ``max_bytes`` pushes the oldest out, so a second server or a replay can read them), the
    duplicate window of :data:`DUPLICATE_WINDOW_S`. ``max_bytes=-1``: bounded by the NATS server's own
    JetStream store limit (``max_file_store`` in its configuration).
    """
    config = StreamConfig(
        name=name,
        description="vigil: events from edge devices to the servers",
        subjects=[f"{SUBJECT_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=max_age_s,
        max_bytes=max_bytes,
        duplicate_window=duplicate_window_s,
    )
    try:
        return await js.add_stream(config)
    except nats.js.errors.BadRequestError as e:
        if e.err_code != 10058:  # "stream name already in use with a different configuration"
            raise
        return await js.update_stream(config)


class LoopThread:
    """A daemon thread running one asyncio loop: ``_work()`` until ``stop()``.

    ``stop()`` cancels the work unless ``_busy`` is set (the consumer sets it while it handles a batch,
    so a stop finishes the batch first). An unexpected exception is logged and the work starts again
    after a second: delivery never stops for good.
    """

    thread_name = "vigil-loop"

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self._errors = 0
        self._last_error: str | None = None
        self._nc: Client | None = None
        self._busy = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name=self.thread_name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop (what is in flight stays to be sent or delivered again) and join the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """The thread is started and not stopped."""
        return self._thread.is_alive() and not self._stopping.is_set()

    @property
    def connected(self) -> bool:
        nc = self._nc
        return bool(nc is not None and nc.is_connected)

    async def _work(self) -> None:
        raise NotImplementedError

    def _main(self) -> None:
        while not self._stopping.is_set():
            try:
                asyncio.run(self._run())
            except Exception as e:  # a bug must not stop delivery for good: log, count, start again
                if not threading.main_thread().is_alive():
                    return  # the interpreter is exiting (a daemon thread nobody stopped)
                log.exception("%s failed; it starts again in 1 s", self.thread_name)
                self._failed(f"{self.thread_name} failed: {e!r}")
                self._stopping.wait(1.0)

    async def _run(self) -> None:
        work = asyncio.create_task(self._work())
        while not work.done():
            await asyncio.wait({work}, timeout=0.1)
            if self._stopping.is_set() and not self._busy and not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                return
        work.result()

    async def _connect(self, name: str) -> Client:
        """Connect, trying again with a back-off until it works (nats-py itself retries forever)."""
        delay = 0.1
        while True:
            try:
                nc = await nats.connect(
                    self.nats_url,
                    name=name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                )
                self._nc = nc
                return nc
            except (nats.errors.Error, TimeoutError, OSError) as e:
                self._failed(f"cannot connect to {self.nats_url}: {type(e).__name__}: {e}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _failed(self, message: str) -> bool:
        if message != self._last_error:
            log.warning("%s: %s", self.thread_name, message)
        self._errors += 1
        self._last_error = message
        return False

    async def _on_error(self, e: Exception) -> None:
        what = "cannot connect to" if self._nc is None else "connection to"
        self._failed(f"{what} {self.nats_url}: {type(e).__name__}: {e}")

    async def _on_disconnected(self) -> None:
        self._last_error = f"disconnected from {self.nats_url}"


class PublisherStats(BaseModel):
    """What the publisher has done (a heartbeat, ``vigil worker``'s status and the bench read it)."""

    connected: bool
    sent: int
    """Items acknowledged by JetStream (duplicates included) and removed from the outbox."""
    duplicates: int
    """Of those, the ones JetStream had already (a resend inside the duplicate window)."""
    too_large: int
    """Items dropped because the NATS server's max_payload is smaller (logged)."""
    errors: int
    last_error: str | None
    last_sent_at: float | None
    """Unix time of the last PubAck."""
    depth: int
    """Items still in the outbox."""


class Publisher(LoopThread):
    """Drains ``outbox`` to JetStream in order, from a daemon thread; ``start()`` it, ``stop()`` it.

    Args:
        outbox: the device's outbox.
        nats_url: the NATS server, e.g. ``nats://server:4222`` (comma-separated for a cluster).
        stream: the stream the server created (``VIGIL_NATS_STREAM``); a publish is refused by a
            server that would store it elsewhere. Until the stream exists, the publisher waits and retries.
        batch: items read from the outbox at a time (their acks share one transaction).
        publish_timeout_s: how long to wait for one PubAck before trying again.
        backoff_max_s: the longest pause between tries after a failure (it doubles from 0.1 s).
    """

    thread_name = "vigil-publisher"

    def __init__(
        self,
        outbox: Outbox,
        nats_url: str,
        *,
        stream: str,
        batch: int = 100,
        publish_timeout_s: float = 5.0,
        backoff_max_s: float = 5.0,
    ) -> None:
        super().__init__(nats_url)
        self.outbox = outbox
        self.stream = stream
        self.batch = batch
        self.publish_timeout_s = publish_timeout_s
        self.backoff_max_s = backoff_max_s
        self._sent = self._duplicates = self._too_large = 0
        self._last_sent_at: float | None = None

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until the outbox is empty (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.depth() > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stats(self) -> PublisherStats:
        return PublisherStats(
            connected=self.connected,
            sent=self._sent,
            duplicates=self._duplicates,
            too_large=self._too_large,
            errors=self._errors,
            last_error=self._last_error,
            last_sent_at=self._last_sent_at,
            depth=self.outbox.depth(),
        )

    # --- the loop --------------------------------------------------------------------------------

    async def _work(self) -> None:
        nc = await self._connect("vigil-worker")
        js = nc.jetstream(timeout=self.publish_timeout_s)
        backoff = 0.1
        try:
            while not self._stopping.is_set():
                items = self.outbox.peek(self.batch)
                if not items:
                    await asyncio.to_thread(self.outbox.wait_for_items, 0.25)
                    continue
                if await self._publish_batch(nc, js, items):
                    backoff = 0.1
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
        finally:
            self._nc = None
            await nc.close()

    async def _publish_batch(self, nc: Client, js: JetStreamContext, items: list[OutboxItem]) -> bool:
        """Publish ``items`` in order until one fails; ack the ones that got their PubAck (also when a
        stop cancels the batch). True if all did."""
        done: list[int] = []
        try:
            for item in items:
                if self._stopping.is_set():
                    return False
                if not await self._publish_one(nc, js, item):
                    return False
                done.append(item.seq)
            return True
        finally:
            if done:
                self.outbox.ack(*done)

    async def _publish_one(self, nc: Client, js: JetStreamContext, item: OutboxItem) -> bool:
        """True once JetStream acknowledged ``item`` (or it was dropped as too large for the server)."""
        if len(item.payload) > nc.max_payload:
            self._too_large += 1
            log.error(
                "event %s (%s, %d bytes) dropped: the NATS server takes at most %d bytes a message "
                "(raise max_payload in its configuration)",
                item.msg_id, item.kind, len(item.payload), nc.max_payload,
            )  # fmt: skip
            return True
        try:
            ack = await js.publish(
                item.subject,
                item.payload,
                stream=self.stream,
                headers={**item.headers, MSG_ID_HEADER: item.msg_id},
            )
        except nats.js.errors.NoStreamResponseError:
            return self._failed(f"no stream takes {item.subject} yet (the server creates {self.stream})")
        except (nats.errors.Error, TimeoutError, OSError) as e:
            return self._failed(f"publish failed: {type(e).__name__}: {e}")
        self._sent += 1
        self._duplicates += bool(ack.duplicate)
        self._last_sent_at = time.time()
        return True
