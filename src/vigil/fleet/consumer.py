"""The server side of the fleet transport: consume device events from JetStream into the catalog.

:class:`EventConsumer` is a thread with its own asyncio loop. It creates (or updates) the events stream,
binds the durable pull consumer ``vigil-server`` (explicit acks), and handles each message in stream
order:

1. the ``Vigil-Device`` header names the device; :func:`vigil.fleet.devices.signing_key_for` gives its
   key (none: unknown, not yet paired, or revoked);
2. the ``Vigil-Signature`` header must be the HMAC-SHA256 of the payload with that key, and the
   subject's device token must be that device's;
3. the payload must be an event (:data:`vigil.events.schemas.EVENT_ADAPTER`);
4. :class:`vigil.video.sinks.CatalogWriter` (``device=`` the device) stores it in one transaction,
   once per ``event_id``; ``on_event`` gets the stored copy (a duplicate is acked and not passed on);
5. only then the message is acked.

A message refused at steps 1 to 3 (or that the catalog rejects for good) is terminated: JetStream
does not deliver it again. Each refusal is counted per reason (``vigil_fleet_refused_total{reason}``)
and logged once per device and reason. A database or disk that fails for a while (locked, full) is no
refusal: the store is tried again with a back-off (0.5 s doubling to 10 s), as often as needed, the
message held meanwhile (``in_progress``) so that nothing behind it overtakes it (the order per camera
holds); a stop meanwhile naks it and the rest of its batch, to come again at once. The consumer is
durable: the server stopped and started again resumes after the last acked message (a stop finishes
the batch in hand). What was delivered but not acked when the server crashed comes again after
``ack_wait_s`` (after newer messages, then; the catalog stores each event once either way).

Keys are looked up once per fetched batch, so a revoked device's messages are refused from the next
batch on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import NotFoundError, VigilError
from vigil.events.schemas import EVENT_ADAPTER, AnyEvent
from vigil.fleet.devices import get_device, signing_key_for
from vigil.fleet.transport import (
    DEVICE_HEADER,
    SIGNATURE_HEADER,
    SUBJECT_PREFIX,
    LoopThread,
    ensure_stream,
    sign,
    subject_token,
)
from vigil.video.sinks import CatalogWriter

log = logging.getLogger(__name__)

DURABLE = "vigil-server"
MAX_TRIES_ON_FAILURE = 5
"""An unexpected error (not the database or the disk failing) is tried this often, then terminated."""

REASONS = (
    "no_device",
    "unknown_device",
    "unpaired_device",
    "revoked_device",
    "bad_signature",
    "subject_mismatch",
    "invalid_payload",
    "rejected",
    "failed",
)
"""Why a message was refused (the ``reason`` label)."""

OnEvent = Callable[[AnyEvent], None]


@dataclass(frozen=True)
class _Outcome:
    """What to do with one message: ack, term (with the reason), or retry the store."""

    action: str
    reason: str | None = None


class ConsumerStats(BaseModel):
    """What the consumer has done since it started."""

    connected: bool
    received: int
    stored: int
    """Events written to the catalog (or passed on: events the catalog does not keep)."""
    duplicates: int
    """Events whose ``event_id`` was stored already (acked, not passed on)."""
    refused: dict[str, int]
    """Per reason (:data:`REASONS`)."""
    retried: int
    """Stores tried again (the database or the disk failed; the message waited, nothing overtook it)."""
    pending: int | None
    """Messages in the stream not yet delivered to this consumer (as of the last one received)."""
    errors: int
    last_error: str | None


class EventConsumer(LoopThread):
    """Consumes the device events of ``settings.nats_stream`` into ``app``'s catalog; ``start()`` it.

    Args:
        app: the server's application context.
        settings: ``nats_url`` and ``nats_stream`` are read.
        on_event: called (from the consumer's thread) with each stored event, e.g. the server's bus.
        batch: messages fetched at a time.
        ack_wait_s: a message delivered and not acked within this is delivered again.
        max_ack_pending: at most this many messages delivered and not yet acked.
    """

    thread_name = "vigil-consumer"

    def __init__(
        self,
        app: App,
        settings: Settings,
        on_event: OnEvent | None = None,
        *,
        batch: int = 64,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1024,
    ) -> None:
        if not settings.nats_url:
            raise VigilError("the event consumer needs VIGIL_NATS_URL", hint="set it, or run without it")
        super().__init__(settings.nats_url)
        self.app = app
        self.stream = settings.nats_stream
        self.on_event = on_event
        self.batch = batch
        self.ack_wait_s = ack_wait_s
        self.max_ack_pending = max_ack_pending
        self._received = self._stored = self._duplicates = self._retried = 0
        self._refused: Counter[str] = Counter()
        self._pending: int | None = None
        self._warned: set[tuple[str, str]] = set()
        self._ready = threading.Event()

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the stream and the durable consumer are set up (True) or ``timeout_s`` passed."""
        return self._ready.wait(timeout_s)

    def stats(self) -> ConsumerStats:
        return ConsumerStats(
            connected=self.connected,
            received=self._received,
            stored=self._stored,
            duplicates=self._duplicates,
            refused=dict(self._refused),
            retried=self._retried,
            pending=self._pending,
            errors=self._errors,
            last_error=self._last_error,
        )

    # --- the loop --------------------------------------------------------------------------------

    async def _work(self) -> None:
        nc = await self._connect("vigil-server")
        try:
            js = nc.jetstream()
            psub = await self._subscribe(js)
            self._ready.set()
            while not self._stopping.is_set():
                self._busy = True  # a stop waits for the fetch (at most 1 s) and the batch it brings
                try:
                    await self._fetch_and_handle(psub)
                finally:
                    self._busy = False
        finally:
            self._ready.clear()
            self._nc = None
            await nc.close()

    async def _fetch_and_handle(self, psub: JetStreamContext.PullSubscription) -> None:
        """One pull. Not cancelled midway: messages of a cancelled pull would come again only after
        ``ack_wait_s``, behind newer ones."""
        try:
            msgs = await psub.fetch(self.batch, timeout=1.0)
        except nats.errors.TimeoutError:
            return
        except (nats.errors.Error, OSError) as e:
            self._failed(f"fetch failed: {type(e).__name__}: {e}")
            await asyncio.sleep(0.5)
            return
        await self._handle_batch(msgs)

    async def _subscribe(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        """Ensure the stream and bind the durable consumer, trying again until both work."""
        config = ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
            max_deliver=-1,
        )
        while True:
            try:
                await ensure_stream(js, self.stream)
                return await js.pull_subscribe(
                    f"{SUBJECT_PREFIX}.>", durable=DURABLE, stream=self.stream, config=config
                )
            except (nats.errors.Error, OSError) as e:
                self._failed(f"cannot set up stream {self.stream}: {type(e).__name__}: {e}")
                await asyncio.sleep(1.0)

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        """Handle ``msgs`` in order. A store that fails for a while is retried here, the message kept
        (``in_progress``), so nothing behind it overtakes it; a stop meanwhile naks it and the rest."""
        keys: dict[str, bytes | str] = {}
        for i, msg in enumerate(msgs):
            self._received += 1
            attempt = 1
            outcome = await asyncio.to_thread(self._handle, msg, keys, attempt)
            while outcome.action == "retry":
                self._retried += 1
                if not await self._hold(msg, _backoff_s(attempt, self.ack_wait_s)):
                    self._received -= len(msgs) - i  # they come again
                    await asyncio.gather(*(m.nak() for m in msgs[i:]), return_exceptions=True)
                    return
                attempt += 1
                outcome = await asyncio.to_thread(self._handle, msg, keys, attempt)
            try:
                await (msg.ack() if outcome.action == "ack" else msg.term())
            except (nats.errors.Error, OSError) as e:  # the ack is lost: the message comes again
                self._failed(f"ack failed: {type(e).__name__}: {e}")

    async def _hold(self, msg: Msg, seconds: float) -> bool:
        """Wait ``seconds`` keeping ``msg`` (its ack deadline pushed back); False if stopping."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                return False
            with contextlib.suppress(nats.errors.Error, OSError):
                await msg.in_progress()
            await asyncio.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        return not self._stopping.is_set()

    # --- one message (runs on a worker thread: the catalog is synchronous) -----------------------

    def _handle(self, msg: Msg, keys: dict[str, bytes | str], attempt: int) -> _Outcome:
        self._pending = _num_pending(msg)
        device = (msg.headers or {}).get(DEVICE_HEADER, "")
        if not device:
            return self._refuse("?", "no_device", f"no {DEVICE_HEADER} header on {msg.subject}")
        key = keys.get(device)
        if key is None:
            key = keys[device] = self._key(device)
        if isinstance(key, str):
            return self._refuse(device, key, "its events are refused")
        signature = (msg.headers or {}).get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(sign(key, msg.data).encode(), signature.encode()):
            return self._refuse(device, "bad_signature", "a message's signature does not match its key")
        if msg.subject.split(".")[2:3] != [subject_token(device)]:
            return self._refuse(device, "subject_mismatch", f"it published on {msg.subject}")
        try:
            event = EVENT_ADAPTER.validate_json(msg.data)
        except ValidationError as e:
            return self._refuse(device, "invalid_payload", f"not an event: {e.errors()[:1]}")
        return self._store(device, event, attempt)

    def _key(self, device: str) -> bytes | str:
        """The device's signing key, or the refusal reason."""
        key = signing_key_for(self.app, device)
        if key:
            return key
        try:
            state = get_device(self.app, device).state
        except NotFoundError:
            return "unknown_device"
        return "revoked_device" if state == "revoked" else "unpaired_device"

    def _store(self, device: str, event: AnyEvent, attempt: int) -> _Outcome:
        try:
            stored = CatalogWriter(self.app, device=device).write(event)
        except (OperationalError, OSError) as e:  # the database or the disk, for a while: again
            self._failed(f"storing event {event.event_id} failed (try {attempt}), trying again: {e}")
            return _Outcome("retry")
        except (VigilError, SQLAlchemyError) as e:  # this event cannot be stored: refuse it
            return self._refuse(device, "rejected", f"event {event.event_id} not stored: {e}")
        except Exception as e:  # a bug: retry a few times, then give up on this message loudly
            log.exception("event %s from %r could not be stored", event.event_id, device)
            if attempt >= MAX_TRIES_ON_FAILURE:
                return self._refuse(device, "failed", f"event {event.event_id} failed {attempt} times")
            self._failed(f"storing event {event.event_id} failed: {e!r}")
            return _Outcome("retry")
        if stored is None:
            self._duplicates += 1
            return _Outcome("ack")
        self._stored += 1
        if self.on_event is not None:
            try:
                self.on_event(stored)
            except Exception:  # stored already: a failing listener must not bring the event back
                log.exception("on_event failed for event %s", stored.event_id)
        return _Outcome("ack")

    def _refuse(self, device: str, reason: str, detail: str) -> _Outcome:
        self._refused[reason] += 1
        if (device, reason) not in self._warned:
            self._warned.add((device, reason))
            log.warning(
                "device %r: %s (%s); further ones are counted, not logged", device[:100], detail, reason
            )
        return _Outcome("term", reason=reason)


def _num_pending(msg: Msg) -> int | None:
    try:
        n = msg.metadata.num_pending
    except (nats.errors.NotJSMessageError, ValueError, IndexError):
        return None
    return None if n is None else int(n)


def _backoff_s(attempt: int, ack_wait_s: float) -> float:
    """0.5 s after a first failure, doubling to at most 10 s (and a third of the ack wait)."""
    return float(min(0.5 * 2 ** (attempt - 1), 10.0, ack_wait_s / 3))


class ConsumerCollector(Collector):
    """Prometheus metrics of the consumer; register it in the server's ``CollectorRegistry``."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        st = self.consumer.stats()
        connected = GaugeMetricFamily("vigil_fleet_consumer_connected", "1 while connected to NATS")
        connected.add_metric([], 1.0 if st.connected else 0.0)
        events = CounterMetricFamily(
            "vigil_fleet_events", "Device events consumed, by outcome", labels=["outcome"]
        )
        for outcome, n in (("stored", st.stored), ("duplicate", st.duplicates), ("retried", st.retried)):
            events.add_metric([outcome], n)
        refused = CounterMetricFamily(
            "vigil_fleet_refused", "Device events refused, by reason", labels=["reason"]
        )
        for reason in REASONS:
            refused.add_metric([reason], st.refused.get(reason, 0))
        pending = GaugeMetricFamily("vigil_fleet_pending", "Events in the stream not yet delivered")
        if st.pending is not None:
            pending.add_metric([], st.pending)
        yield from (connected, events, refused, pending)
