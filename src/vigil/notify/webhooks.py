"""Signed webhooks: every bus event whose type a webhook subscribes to is POSTed to its URL.

Each request carries the event's public form (:func:`vigil.events.schemas.public`: ``type``,
``version``, ``event_id`` and the fields, never crops or templates) as its JSON body, and these headers:

    Content-Type: application/json
    X-Vigil-Event: <event type>
    X-Vigil-Delivery: <uuid, the same on every retry of one delivery>
    X-Vigil-Timestamp: <unix seconds of this attempt>
    X-Vigil-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

Receivers check a request with :func:`verify_signature`. A non-2xx answer or a network error is
retried after ``webhook_backoff_s``, then twice that, and so on, up to ``webhook_attempts`` tries;
then the delivery becomes a :class:`~vigil.storage.tables.DeadLetter` row (``GET
/api/webhooks/dead-letters``). Deliveries run on a small thread pool; the bus listener only queues.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import InputError, NotFoundError
from vigil.events.schemas import EVENT_TYPES, AnyEvent, public
from vigil.storage import audit
from vigil.storage.tables import DeadLetter, Webhook

log = logging.getLogger(__name__)

ALL = "*"
"""Subscribes to every event type (:data:`vigil.events.schemas.EVENT_TYPES` lists them)."""
SIGNATURE_PREFIX = "sha256="
CACHE_S = 5.0
"""How long the list of webhooks read from the catalog is reused (changes through the API apply at once)."""


# signing -------------------------------------------------------------------------------------------
def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Vigil-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``f"{timestamp}.{body}"``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    header: str,
    tolerance_s: float = 300,
    *,
    now_s: float | None = None,
) -> bool:
    """True when a webhook request is authentic and fresh.

    ``timestamp`` is the ``X-Vigil-Timestamp`` header, ``body`` the raw request body (the exact bytes
    received, before any JSON parsing), ``header`` the ``X-Vigil-Signature`` header. A timestamp more
    than ``tolerance_s`` seconds away from now (``now_s``, default the clock) fails, so a captured
    request cannot be replayed later. The comparison takes constant time.

    >>> body = b'{"type":"alarm"}'
    >>> verify_signature("s3cret", 1700000000, body, sign("s3cret", 1700000000, body), now_s=1700000010)
    True
    >>> verify_signature("wrong", 1700000000, body, sign("s3cret", 1700000000, body), now_s=1700000010)
    False
    """
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - ts) > tolerance_s:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, ts, raw), header.strip())


def encode_event(event: dict[str, Any]) -> bytes:
    """The JSON body of an event (compact, UTF-8)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# the catalog ---------------------------------------------------------------------------------------
class WebhookInfo(BaseModel):
    id: int
    url: str
    event_types: list[str]
    """Event types delivered, or ``["*"]`` for all."""
    enabled: bool
    created_at: datetime


class CreatedWebhook(WebhookInfo):
    secret: str
    """The signing secret, shown this once."""


class DeadLetterInfo(BaseModel):
    id: int
    channel: str
    """``webhook:<id>`` or ``mqtt``."""
    target: str
    event_type: str
    payload: dict[str, Any] | str
    """The event that was not delivered (its JSON, or the raw text if it was not JSON)."""
    attempts: int
    last_error: str
    created_at: datetime


def _info(w: Webhook) -> WebhookInfo:
    return WebhookInfo(
        id=w.id, url=w.url, event_types=w.event_types.split(","), enabled=w.enabled, created_at=w.created_at
    )


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL, else :class:`InputError`."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"webhook URL {url!r} is not an http(s) URL", hint="for example https://example.org/vigil-hook"
        )
    return url.strip()


def check_event_types(event_types: list[str]) -> str:
    """The stored form (comma list, or ``*``) of ``event_types``; unknown types are refused."""
    wanted = [t.strip() for t in event_types if t.strip()]
    if not wanted:
        raise InputError("a webhook needs at least one event type", hint='use ["*"] for every event')
    if ALL in wanted:
        return ALL
    unknown = sorted(set(wanted) - set(EVENT_TYPES))
    if unknown:
        raise InputError(
            "unknown event type(s): " + ", ".join(unknown), hint="use * or any of " + ", ".join(EVENT_TYPES)
        )
    return ",".join(dict.fromkeys(wanted))


def list_webhooks(app: App) -> list[WebhookInfo]:
    with app.db.session() as s:
        return [_info(w) for w in s.scalars(select(Webhook).order_by(Webhook.id))]


def get_webhook(app: App, webhook_id: int) -> Webhook:
    with app.db.session() as s:
        w = s.get(Webhook, webhook_id)
        if w is None:
            raise NotFoundError(f"no webhook with id {webhook_id}", hint="GET /api/webhooks lists them")
        return w


def _audit(s: Session, actor: str, action: str, info: WebhookInfo) -> None:
    """The entry of a webhook change: where it sends (no query, no credentials) and what; never the secret."""
    parts = urlsplit(info.url)
    where = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
    audit.append(
        s,
        actor,
        action,
        target_type="webhook",
        target_id=info.id,
        target_name=where,
        event_types=info.event_types,
        enabled=info.enabled,
    )


def create_webhook(
    app: App,
    url: str,
    event_types: list[str],
    *,
    secret: str | None = None,
    enabled: bool = True,
    actor: str = audit.SYSTEM,
) -> CreatedWebhook:
    """A new webhook; without ``secret`` one is generated. The secret is returned this once.
    Audited (``webhook_create``) in the same transaction."""
    key = secret or secrets.token_urlsafe(32)
    with app.db.session() as s:
        w = Webhook(
            url=check_url(url), secret=key, event_types=check_event_types(event_types), enabled=enabled
        )
        s.add(w)
        s.flush()
        info = _info(w)
        _audit(s, actor, "webhook_create", info)
        return CreatedWebhook(**info.model_dump(), secret=key)


def update_webhook(
    app: App,
    webhook_id: int,
    *,
    enabled: bool | None = None,
    event_types: list[str] | None = None,
    actor: str = audit.SYSTEM,
) -> WebhookInfo:
    """Enable or disable a webhook or change its event types; audited (``webhook_update``) in the same
    transaction."""
    with app.db.session() as s:
        w = s.get(Webhook, webhook_id)
        if w is None:
            raise NotFoundError(f"no webhook with id {webhook_id}")
        if enabled is not None:
            w.enabled = enabled
        if event_types is not None:
            w.event_types = check_event_types(event_types)
        info = _info(w)
        _audit(s, actor, "webhook_update", info)
        return info


def delete_webhook(app: App, webhook_id: int, *, actor: str = audit.SYSTEM) -> WebhookInfo:
    """Remove a webhook (its dead letters are kept); audited (``webhook_delete``) in the same
    transaction."""
    with app.db.session() as s:
        w = s.get(Webhook, webhook_id)
        if w is None:
            raise NotFoundError(f"no webhook with id {webhook_id}")
        info = _info(w)
        s.delete(w)
        _audit(s, actor, "webhook_delete", info)
        return info


def list_dead_letters(
    app: App, *, channel: str | None = None, limit: int = 100, offset: int = 0
) -> list[DeadLetterInfo]:
    """Undelivered notifications, newest first."""
    q = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit).offset(offset)
    if channel:
        q = q.where(DeadLetter.channel == channel)
    out = []
    with app.db.session() as s:
        for d in s.scalars(q):
            try:
                payload: dict[str, Any] | str = json.loads(d.payload)
            except ValueError:
                payload = d.payload
            out.append(
                DeadLetterInfo(
                    id=d.id,
                    channel=d.channel,
                    target=d.target,
                    event_type=d.event_type,
                    payload=payload,
                    attempts=d.attempts,
                    last_error=d.last_error,
                    created_at=d.created_at,
                )
            )
    return out


# delivery ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Target:
    id: int
    url: str
    secret: str
    types: frozenset[str] | None
    """None: every event."""

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


@dataclass
class _Delivery:
    target: _Target
    event_type: str
    body: bytes
    delivery_id: str
    attempts: int = 0
    last_error: str = ""


class WebhookNotifier:
    """Delivers bus events to the enabled webhooks that want them. Use it as a bus listener.

    The listener only queues the event; a scheduler thread matches it against the webhooks (read from
    the catalog, cached :data:`CACHE_S` seconds) and hands each delivery to a pool of ``workers``
    threads. A failed attempt is scheduled again after the backoff, never slept on in a worker.
    """

    def __init__(self, app: App, *, workers: int = 4) -> None:
        self.app = app
        s = app.settings
        self.attempts = s.webhook_attempts
        self.backoff_s = s.webhook_backoff_s
        self.timeout_s = s.webhook_timeout_s
        self.workers = workers
        self.delivered = 0
        self.dead = 0
        self._heap: list[tuple[float, int, _Delivery | AnyEvent]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._inflight = 0
        self._draining = False
        self._drain_until = 0.0
        self._closed = False
        self._cache: tuple[float, list[_Target]] | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None

    # lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._draining = self._closed = False
        self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="vigil-webhook")
        self._thread = threading.Thread(target=self._run, name="vigil-webhooks", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float | None = None) -> None:
        """Deliver what is due now (for at most ``grace_s``, default the request timeout and a second),
        then write every delivery still waiting for a retry to the dead letters."""
        if self._thread is None:
            return
        with self._cond:
            self._draining = True
            self._drain_until = time.monotonic() + (self.timeout_s + 1 if grace_s is None else grace_s)
            self._cond.notify_all()
        self._thread.join()
        self._thread = None
        self._closed = True  # attempts still queued in the pool go back to the heap, unattempted
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._http is not None:
            self._http.close()
        with self._cond:
            left, self._heap = self._heap, []
        for _, _, item in left:
            for d in [item] if isinstance(item, _Delivery) else self._fan_out(item):
                why = d.last_error or "never attempted"
                self._dead_letter(d, f"{why} (the server stopped before it was delivered)")

    # the bus side ----------------------------------------------------------------------------------
    def __call__(self, event: AnyEvent) -> None:
        """The bus listener: queue the event (returns at once)."""
        self._push(time.monotonic(), event)

    def invalidate(self) -> None:
        """Forget the cached webhooks (call after a change through the API)."""
        self._cache = None

    def send_test(self, webhook_id: int) -> str:
        """Queue a ``{"type": "test"}`` event to one webhook (enabled or not); its delivery id."""
        w = get_webhook(self.app, webhook_id)
        target = _Target(w.id, w.url, w.secret, None)
        event = {
            "type": "test",
            "webhook_id": w.id,
            "message": "a test notification from vigil",
            "ts": datetime.now(UTC).isoformat(),
        }
        d = _Delivery(target, "test", encode_event(event), str(uuid.uuid4()))
        self._push(time.monotonic(), d)
        return d.delivery_id

    # the scheduler ---------------------------------------------------------------------------------
    def _push(self, due: float, item: _Delivery | AnyEvent) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), item))
            self._cond.notify_all()

    def _next(self) -> _Delivery | AnyEvent | None:
        """The next item that is due, waiting for it; None when the notifier is to stop."""
        with self._cond:
            while True:
                now = time.monotonic()
                due = bool(self._heap) and self._heap[0][0] <= now
                if self._draining and (now >= self._drain_until or (not due and self._inflight == 0)):
                    return None
                if due:
                    return heapq.heappop(self._heap)[2]
                wait = self._heap[0][0] - now if self._heap else None
                if self._draining:
                    wait = min(wait or 0.05, 0.05)
                self._cond.wait(wait)

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                for d in [item] if isinstance(item, _Delivery) else self._fan_out(item):
                    self._submit(d)
            except Exception:  # the scheduler must outlive any one bad event
                log.exception("webhook scheduling failed")

    def _submit(self, d: _Delivery) -> None:
        assert self._pool is not None  # started before the scheduler thread
        with self._cond:
            self._inflight += 1
        self._pool.submit(self._attempt, d)

    def _targets(self) -> list[_Target]:
        cached = self._cache
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        try:
            with self.app.db.session() as s:
                rows = s.scalars(select(Webhook).where(Webhook.enabled.is_(True))).all()
                targets = [
                    _Target(
                        w.id,
                        w.url,
                        w.secret,
                        None if w.event_types == ALL else frozenset(w.event_types.split(",")),
                    )
                    for w in rows
                ]
        except SQLAlchemyError as exc:
            log.error("cannot read the webhooks from the catalog (%s); using the last known list", exc)
            return cached[1] if cached else []
        self._cache = (time.monotonic(), targets)
        return targets

    def _fan_out(self, event: AnyEvent) -> list[_Delivery]:
        etype = event.type
        targets = [t for t in self._targets() if t.wants(etype)]
        if not targets:
            return []
        body = encode_event(public(event))
        return [_Delivery(t, etype, body, str(uuid.uuid4())) for t in targets]

    # the workers -----------------------------------------------------------------------------------
    def _attempt(self, d: _Delivery) -> None:
        try:
            if self._closed:
                self._push(time.monotonic(), d)
                return
            d.attempts += 1
            error = self._post(d)
            if error is None:
                with self._cond:
                    self.delivered += 1
                return
            d.last_error = error
            if d.attempts >= self.attempts:
                self._dead_letter(d, error)
                return
            delay = self.backoff_s * 2 ** (d.attempts - 1)
            log.info("webhook %s: %s; retry %d in %.1f s", d.target.id, error, d.attempts, delay)
            self._push(time.monotonic() + delay, d)
        except Exception:
            log.exception("webhook %s: delivery failed", d.target.id)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _post(self, d: _Delivery) -> str | None:
        """One attempt: None when the receiver answered 2xx, else what went wrong."""
        assert self._http is not None  # set by start()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "vigil-webhooks",
            "X-Vigil-Event": d.event_type,
            "X-Vigil-Delivery": d.delivery_id,
            "X-Vigil-Timestamp": str(ts),
            "X-Vigil-Signature": sign(d.target.secret, ts, d.body),
        }
        try:
            r = self._http.post(d.target.url, content=d.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= r.status_code < 300:
            return None
        return f"HTTP {r.status_code}"

    def _dead_letter(self, d: _Delivery, error: str) -> None:
        with self._cond:
            self.dead += 1
        log.warning(
            "webhook %s (%s): %s event %s not delivered after %d attempt(s): %s",
            d.target.id,
            d.target.url,
            d.event_type,
            d.delivery_id,
            d.attempts,
            error,
        )
        try:
            with self.app.db.session() as s:
                s.add(
                    DeadLetter(
                        channel=f"webhook:{d.target.id}",
                        target=d.target.url,
                        event_type=d.event_type,
                        payload=d.body.decode(errors="replace"),
                        attempts=d.attempts,
                        last_error=error,
                    )
                )
        except SQLAlchemyError as exc:
            log.error("cannot store the dead letter of delivery %s: %s", d.delivery_id, exc)
