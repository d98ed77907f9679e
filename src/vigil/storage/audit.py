"""The tamper-evident audit log (EU AI Act Art. 12).

Append-only: each entry carries the hash of the one before it and its own hash over its content and
that link, so editing, deleting or re-ordering any entry breaks the chain from there on, and
:func:`verify` names the first broken entry. On SQLite, triggers also refuse UPDATE and DELETE on the
table. ``prev_hash`` is unique, so two writers (the server and a camera worker) can never fork the
chain. Writers are serialised: :func:`append` takes the log's write lock in the caller's
transaction before it reads the head, so an entry written with the change it records (a service's
own transaction) links to the true head; :func:`record` also retries on a lost race.

Entries record who (``user:<name>``, ``key:<name>``, ``cli:<os user>``, ``camera:<name>``), when, the
action, its target, and a JSON detail: the input that led to a match (photo hash, camera, frame), the
result (identities and scores), the case reference. Never a face image or a template.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.storage.db import HasDatabase
from vigil.storage.tables import AuditEntry

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_RETRIES = 50
SYSTEM = "system"
"""The actor of a service call that names none (a script, the demo, a benchmark)."""
_PG_LOCK_KEY = 0x76696769_6C  # 'vigil': the advisory lock that serialises writers of the log


class AuditRecord(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    target_name: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyReport(BaseModel):
    ok: bool
    entries: int
    head_hash: str
    """The hash of the last entry: keep it somewhere else (a ticket, a signed e-mail) to anchor the log."""
    first_broken_id: int | None = None
    problem: str | None = None


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _naive_utc(at: datetime) -> datetime:
    return (at.astimezone(UTC) if at.tzinfo else at).replace(tzinfo=None)


def _digest(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    target_type: str | None,
    target_id: str | None,
    target_name: str | None,
    detail: str,
) -> str:
    payload = json.dumps(
        [
            prev_hash,
            _naive_utc(at).isoformat(timespec="microseconds"),
            actor,
            action,
            target_type,
            target_id,
            target_name,
            detail,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _lock_head(s: Session) -> None:
    """Make ``s`` the only writer of the log until it ends, so the head it reads stays the head.

    SQLite: a write statement (one that matches no row) takes the database's write lock for the rest
    of the transaction. PostgreSQL: a transaction-scoped advisory lock. Elsewhere the unique
    ``prev_hash`` still refuses a fork, and :func:`record` retries.
    """
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        s.execute(text("UPDATE audit_log SET id = id WHERE 0"))
    elif dialect == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def append(
    s: Session,
    actor: str,
    action: str,
    *,
    target_type: str | None = None,
    target_id: object = None,
    target_name: str | None = None,
    **detail: Any,
) -> AuditEntry:
    """Append one entry inside the caller's transaction ``s``: it is committed with the change it
    records, or rolled back with it. Serialises writers of the log until ``s`` ends (keep the
    transaction short). ``detail`` must be JSON-able (no images, no templates)."""
    body = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    tid = None if target_id is None else str(target_id)
    _lock_head(s)
    head = s.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)) or GENESIS
    at = datetime.now(UTC)
    entry = AuditEntry(
        at=_naive_utc(at),
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=tid,
        target_name=target_name,
        detail=body,
        prev_hash=head,
        hash=_digest(head, at, actor, action, target_type, tid, target_name, body),
    )
    s.add(entry)
    s.flush()
    return entry


def record(
    app: HasDatabase,
    actor: str,
    action: str,
    *,
    target_type: str | None = None,
    target_id: object = None,
    target_name: str | None = None,
    **detail: Any,
) -> int:
    """Append one entry in a transaction of its own; returns its id. For an action that changes
    nothing in the catalog (a search, an export); a change is audited with :func:`append` in its own
    transaction."""
    for _ in range(_RETRIES):
        try:
            with app.db.session() as s:
                entry = append(
                    s,
                    actor,
                    action,
                    target_type=target_type,
                    target_id=target_id,
                    target_name=target_name,
                    **detail,
                )
                return entry.id
        except IntegrityError:  # another writer appended first: link to the new head
            continue
    raise RuntimeError("could not append to the audit log (too much contention)")


def _to_record(e: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=e.id,
        at=e.at.replace(tzinfo=UTC) if e.at.tzinfo is None else e.at,
        actor=e.actor,
        action=e.action,
        target_type=e.target_type,
        target_id=e.target_id,
        target_name=e.target_name,
        detail=json.loads(e.detail) if e.detail else {},
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def _rows(app: HasDatabase, batch: int = 1000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        with app.db.session() as s:
            rows = list(
                s.scalars(select(AuditEntry).where(AuditEntry.id > last).order_by(AuditEntry.id).limit(batch))
            )
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def verify(app: HasDatabase) -> VerifyReport:
    """Walk the chain from the first entry; report the first entry that was edited, removed or moved."""
    prev, expected_id, n = GENESIS, 1, 0
    for e in _rows(app):
        n += 1
        problem = None
        if e.id != expected_id:
            problem = f"entries {expected_id} to {e.id - 1} are missing (deleted)"
            broken = expected_id
        elif e.prev_hash != prev:
            problem = (
                "its link to the previous entry does not match (an entry before it was changed or removed)"
            )
            broken = e.id
        elif (
            _digest(e.prev_hash, e.at, e.actor, e.action, e.target_type, e.target_id, e.target_name, e.detail)
            != e.hash
        ):
            problem = "its content does not match its hash (it was edited)"
            broken = e.id
        if problem is not None:
            return VerifyReport(ok=False, entries=n, head_hash=prev, first_broken_id=broken, problem=problem)
        prev, expected_id = e.hash, e.id + 1
    return VerifyReport(ok=True, entries=n, head_hash=prev)


def entries(
    app: HasDatabase,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[AuditRecord]:
    q = select(AuditEntry)
    if since is not None:
        q = q.where(AuditEntry.at >= _naive_utc(since))
    if until is not None:
        q = q.where(AuditEntry.at < _naive_utc(until))
    if action is not None:
        q = q.where(AuditEntry.action == action)
    if actor is not None:
        q = q.where(AuditEntry.actor == actor)
    q = q.order_by(AuditEntry.id.desc() if newest_first else AuditEntry.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    with app.db.session() as s:
        return [_to_record(e) for e in s.scalars(q)]


@dataclass(frozen=True)
class Query:
    """Which entries :func:`export` gives out (the filters of :func:`entries`)."""

    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    actor: str | None = None
    limit: int | None = None
    offset: int = 0
    newest_first: bool = False


def export(app: HasDatabase, actor: str, query: Query, *, fmt: str | None = None) -> list[AuditRecord]:
    """The entries ``query`` selects, given out to ``actor``; the export is itself audited
    (``audit_export``: the filters, the count, and the format ``fmt`` when the caller writes one)."""
    rows = entries(app, **dataclasses.asdict(query))
    shown = {"format": fmt} if fmt is not None else {}
    record(
        app,
        actor,
        "audit_export",
        since=query.since,
        until=query.until,
        filter_action=query.action,
        filter_actor=query.actor,
        entries=len(rows),
        **shown,
    )
    return rows


def count(app: HasDatabase) -> int:
    with app.db.session() as s:
        return int(s.scalar(select(func.count(AuditEntry.id))) or 0)
