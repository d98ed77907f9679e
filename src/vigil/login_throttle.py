"""Failed log-ins, counted per account name and per client, with exponential back-off.

The accounts service (:func:`vigil.accounts.authenticate`) asks :meth:`LoginThrottle.attempt` before
it looks at a password, and reports the outcome. One throttle lives in the memory of the server
process; a restart forgets it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from vigil.core.config import Settings
from vigil.core.errors import VigilError


class TooManyAttemptsError(VigilError):
    """Log-ins refused for a while after too many failures (HTTP 429 with ``Retry-After``)."""

    title = "too many attempts"
    exit_code = 10

    def __init__(self, message: str, *, retry_after_s: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


@dataclass
class _Failures:
    count: int = 0
    last_s: float = 0.0


@dataclass
class LoginThrottle:
    """Failed log-ins per account name and per client (IP), in the memory of the server process.

    After ``login_free_failures`` failures of an account (``login_client_free_failures`` of a client),
    the next attempt must wait ``login_backoff_s``, doubled with every further failure, at most
    ``login_max_backoff_s``; an attempt made sooner is refused before its password is looked at. An
    attempt counts as failed from the moment it is let through, so a burst of parallel guesses cannot
    all pass; a success takes its count back and clears the account's failures. Failures are forgotten
    ``login_forget_s`` after the last one. Unknown names are throttled like accounts (the answers do
    not tell which names exist). Each table holds at most :attr:`max_entries` (the oldest go first).
    """

    settings: Settings
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 10_000
    refused: int = 0
    """Attempts refused unchecked, since the start."""
    unknown_failures: int = 0
    """Failed log-ins for names that are no account, since the start."""
    _accounts: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)
    _clients: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _unknown_pending: int = 0
    _unknown_clients: set[str] = field(default_factory=set)
    _unknown_audited_s: float | None = None

    def _get(self, table: OrderedDict[str, _Failures], key: str, now: float) -> _Failures | None:
        f = table.get(key)
        if f is not None and now - f.last_s > self.settings.login_forget_s:
            del table[key]
            return None
        return f

    def _wait_s(self, f: _Failures | None, free: int, now: float) -> float:
        if f is None or f.count < free:
            return 0.0
        exponent = min(f.count - free, 60)
        delay = min(self.settings.login_max_backoff_s, self.settings.login_backoff_s * 2.0**exponent)
        return max(0.0, f.last_s + delay - now)

    def _count(self, table: OrderedDict[str, _Failures], key: str, now: float) -> None:
        f = self._get(table, key, now) or _Failures()
        f.count += 1
        f.last_s = now
        table[key] = f
        table.move_to_end(key)
        while len(table) > self.max_entries:
            table.popitem(last=False)

    def attempt(self, username: str, client: str | None) -> None:
        """Let one attempt through, counted as failed until :meth:`succeeded`; or refuse it with
        :class:`TooManyAttemptsError`."""
        now = self.clock()
        s = self.settings
        with self._lock:
            wait = self._wait_s(self._get(self._accounts, username, now), s.login_free_failures, now)
            if client:
                peer = self._get(self._clients, client, now)
                wait = max(wait, self._wait_s(peer, s.login_client_free_failures, now))
            if wait > 0:
                self.refused += 1
                seconds = max(1, math.ceil(wait))
                raise TooManyAttemptsError(
                    f"too many failed log-ins; try again in {seconds} s",
                    retry_after_s=seconds,
                    hint="each failure doubles the wait; an admin's password reset ends it for an account",
                )
            self._count(self._accounts, username, now)
            if client:
                self._count(self._clients, client, now)

    def failures(self, username: str) -> int:
        """The account's failures, this attempt included."""
        with self._lock:
            f = self._accounts.get(username)
            return f.count if f else 0

    def succeeded(self, username: str, client: str | None) -> None:
        with self._lock:
            self._accounts.pop(username, None)
            peer = self._clients.get(client) if client else None
            if peer is not None:
                peer.count = max(0, peer.count - 1)

    def forget(self, username: str) -> None:
        """Clear an account's failures (its password was reset)."""
        with self._lock:
            self._accounts.pop(username, None)

    def unknown_failure(self, client: str | None) -> tuple[int, int] | None:
        """Count a failed log-in for a name that is no account. When a summary is due (the first one,
        then at most one per ``login_unknown_audit_s``): (failures, distinct clients) since the last."""
        now = self.clock()
        with self._lock:
            self.unknown_failures += 1
            self._unknown_pending += 1
            if client and len(self._unknown_clients) < 1000:
                self._unknown_clients.add(client)
            last = self._unknown_audited_s
            if last is not None and now - last < self.settings.login_unknown_audit_s:
                return None
            due = (self._unknown_pending, len(self._unknown_clients))
            self._unknown_audited_s, self._unknown_pending, self._unknown_clients = now, 0, set()
            return due
