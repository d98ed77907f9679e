"""Backup and restore of a data directory, while the server runs (docs/backup.md).

A backup is one file: a tar holding a consistent snapshot of the SQLite catalog (``VACUUM INTO``:
one read transaction, so writers in WAL mode go on, and only live rows are copied: the free pages
where erased templates may linger are left behind), the photos and crops the snapshot refers to (the
blob files as they are on disk), the erasure pseudonym key, and ``manifest.json`` (format, vigil
version, schema revision, counts, the audit head, and the sha256 of every member), written last. The
saved FAISS indexes are left out: they are rebuilt from the catalog's templates on first use, so they
cannot disagree with it. The installed model packs are listed, not copied (`vigil models install`).

It is written to ``OUT.partial``, fsynced and renamed, so a backup killed midway never leaves a file
that looks complete; with encryption at rest on, the tar is sealed (:mod:`.backup_archive`).

:func:`restore_backup` unpacks into an empty data directory only, checks every member against the
manifest, verifies the audit chain and appends ``backup_restore``; anything wrong and it leaves
nothing behind. A PostgreSQL catalog is refused (:class:`NotSupportedError`): back it up with ``pg_dump``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from pydantic import BaseModel, ValidationError

from vigil import __version__
from vigil.app import App
from vigil.core import crypto
from vigil.core.errors import ConfigError, ConflictError, InputError, NotSupportedError
from vigil.governance import backup_archive as envelope
from vigil.storage import audit
from vigil.storage.db import Database
from vigil.vision.packs.store import packs_dir

FORMAT = "vigil-backup"
MANIFEST = "manifest.json"
CATALOG = "catalog/vigil.db"
PSEUDONYM_KEY = "pseudonym.key"
_BLOB = re.compile(r"^blobs/([0-9a-f]{2})/([0-9a-f]{62})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_BLOBS = {"token_sha256", "key_sha256", "pairing_sha256", "credential_sha256"}
"""Columns named like a content address that hold a secret's hash, never a file."""

Progress = Callable[[str, int, int], None]
"""``on_progress(step, done, total)``: step is ``catalog``, ``blobs`` or ``write``."""


class BackupManifest(BaseModel):
    format: str
    format_version: int
    vigil_version: str
    created_at: datetime
    schema_revision: str | None
    encrypted: bool
    counts: dict[str, int]
    """Rows per catalog table, and ``blobs``."""
    audit_entries: int
    audit_head: str
    indexes_included: bool = False
    indexes: list[dict[str, Any]]
    """The saved indexes at backup time (stem, generation, count); rebuilt from the catalog on restore."""
    model_packs: list[str]
    """Installed packs at backup time: reinstall them after a restore (`vigil models install NAME`)."""
    missing_blobs: list[str]
    """Files the snapshot refers to that were gone when copied (an erasure or purge just after it)."""
    members: dict[str, str]
    """sha256 of every member but the manifest, by name."""


class BackupInfo(BaseModel):
    path: str
    size_bytes: int
    sha256: str
    """Of the whole file: recorded in the ``backup_create`` entry, to check a copy later."""
    encrypted: bool
    created_at: datetime
    counts: dict[str, int]
    missing_blobs: int
    audit_entry_id: int


class RestoreInfo(BaseModel):
    data_dir: str
    created_at: datetime
    """When the backup was made."""
    counts: dict[str, int]
    audit_entries: int
    """Entries in the restored log, the ``backup_restore`` entry included."""
    model_packs: list[str]
    """Packs to reinstall (`vigil models install NAME`) before the restored catalog is used."""


def _quiet(_step: str, _done: int, _total: int) -> None:
    return None


def _sqlite_path(app: App) -> Path:
    engine = app.db.engine
    if engine.dialect.name != "sqlite":
        tool = "pg_dump" if engine.dialect.name == "postgresql" else "its own backup tool"
        raise NotSupportedError(
            f"vigil backup copies a SQLite catalog; this catalog is a {engine.dialect.name} database",
            hint=f"back the database up with {tool} and the data directory's blobs/ folder with it "
            "(docs/deployment.md, PostgreSQL)",
        )
    path = engine.url.database
    if not path or path == ":memory:":
        raise ConfigError("the catalog is not a file; nothing to back up")
    return Path(path)


def snapshot_catalog(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite catalog at ``source`` (``VACUUM INTO``, one read transaction)."""
    with closing(sqlite3.connect(source, timeout=30)) as conn:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("VACUUM INTO ?", (str(target),))


def _tables(conn: sqlite3.Connection) -> list[str]:
    """The snapshot's tables (plain identifiers only: they are the schema's own names)."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
    return [t for (t,) in rows if _IDENT.match(t) and not t.startswith("sqlite_")]


def _referenced_blobs(conn: sqlite3.Connection) -> set[str]:
    """Every content address a row of the snapshot holds (columns ``sha256`` and ``*_sha256``), so
    a table added later that keeps a file is backed up with it."""
    found: set[str] = set()
    for table in _tables(conn):
        for col in (r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')):
            if (col == "sha256" or col.endswith("_sha256")) and col not in _NOT_BLOBS and _IDENT.match(col):
                q = f'SELECT DISTINCT "{col}" FROM "{table}" WHERE "{col}" IS NOT NULL'  # noqa: S608
                found.update(v for (v,) in conn.execute(q) if isinstance(v, str) and _HEX64.match(v))
    return found


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in _tables(conn)}  # noqa: S608


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def _audit_head(conn: sqlite3.Connection) -> tuple[int, str]:
    n = int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    row = conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return n, (row[0] if row else audit.GENESIS)


def _index_records(app: App) -> list[dict[str, Any]]:
    records = []
    for meta in sorted(app.settings.index_dir.glob("*.json")):
        try:
            label = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(label, dict):
            records.append({"stem": meta.stem, **{k: label.get(k) for k in ("generation", "count")}})
    return records


def _model_packs(app: App) -> list[str]:
    root = packs_dir(app.settings)
    return sorted(p.name for p in root.glob("*") if (p / "installed.json").is_file()) if root.is_dir() else []


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Staged:
    """What goes into the archive: member name to the file on disk, and the manifest."""

    files: dict[str, Path]
    manifest: BackupManifest


def _stage(app: App, staging: Path, encrypted: bool, on_progress: Progress) -> _Staged:
    db_copy = staging / "vigil.db"
    on_progress("catalog", 0, 1)
    snapshot_catalog(_sqlite_path(app), db_copy)
    on_progress("catalog", 1, 1)
    with closing(sqlite3.connect(db_copy)) as conn:
        shas = sorted(_referenced_blobs(conn))
        counts, revision, (n_audit, head) = _counts(conn), _revision(conn), _audit_head(conn)
    files: dict[str, Path] = {CATALOG: db_copy}
    missing = []
    for i, sha in enumerate(shas, 1):
        src = app.blobs.path(sha)
        copy = staging / "blobs" / sha[:2] / sha[2:]
        copy.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(src, copy)  # content-addressed: never rewritten in place
        except FileNotFoundError:
            missing.append(sha)
        else:
            files[f"blobs/{sha[:2]}/{sha[2:]}"] = copy
        on_progress("blobs", i, len(shas))
    key = app.settings.data_dir / PSEUDONYM_KEY
    if key.is_file():
        files[PSEUDONYM_KEY] = key
    counts["blobs"] = len(shas) - len(missing)
    manifest = BackupManifest(
        format=FORMAT,
        format_version=1,
        vigil_version=__version__,
        created_at=datetime.now(UTC),
        schema_revision=revision,
        encrypted=encrypted,
        counts=counts,
        audit_entries=n_audit,
        audit_head=head,
        indexes=_index_records(app),
        model_packs=_model_packs(app),
        missing_blobs=missing,
        members={name: _sha256_file(path) for name, path in files.items()},
    )
    return _Staged(files, manifest)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(datetime.now(UTC).timestamp()), 0o600
    tar.addfile(info, _BytesReader(data))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        out, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return out


def _write_tar(sink: IO[bytes], staged: _Staged, on_progress: Progress) -> None:
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for i, (name, path) in enumerate(staged.files.items(), 1):
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o600
            with path.open("rb") as fh:
                tar.addfile(info, fh)
            on_progress("write", i, len(staged.files))
        _add_bytes(tar, MANIFEST, staged.manifest.model_dump_json(indent=2).encode())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_backup(
    app: App, out: Path, *, actor: str = audit.SYSTEM, on_progress: Progress = _quiet
) -> BackupInfo:
    """Back the data directory up into the file ``out`` (refused if it exists), while vigil runs.

    Audited as ``backup_create`` in the live catalog, with the file's sha256."""
    out = out.expanduser().absolute()
    if out.exists():
        raise ConflictError(f"{out} already exists", hint="name a new file (backups are never overwritten)")
    if not out.parent.is_dir():
        raise InputError(f"the folder {out.parent} does not exist", hint="create it or name another")
    key = app.settings.encryption_key
    partial = out.with_name(out.name + ".partial")
    staging = out.with_name(out.name + ".partial.d")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed backup left
    staging.mkdir(mode=0o700)
    try:
        staged = _stage(app, staging, key is not None, on_progress)
        with partial.open("wb") as fh:
            if key is not None:
                sealed = envelope.SealingWriter(fh, key.get_secret_value())
                _write_tar(sealed, staged, on_progress)  # type: ignore[arg-type]
                sealed.close()
            else:
                _write_tar(fh, staged, on_progress)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, out)
        _fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        partial.unlink(missing_ok=True)
    return _audited(app, out, staged.manifest, actor)


def _audited(app: App, out: Path, manifest: BackupManifest, actor: str) -> BackupInfo:
    sha, size = _sha256_file(out), out.stat().st_size
    entry = audit.record(
        app,
        actor,
        "backup_create",
        target_type="backup",
        target_name=out.name,
        sha256=sha,
        size_bytes=size,
        encrypted=manifest.encrypted,
        counts=manifest.counts,
        audit_head=manifest.audit_head,
        missing_blobs=len(manifest.missing_blobs),
    )
    return BackupInfo(
        path=str(out),
        size_bytes=size,
        sha256=sha,
        encrypted=manifest.encrypted,
        created_at=manifest.created_at,
        counts=manifest.counts,
        missing_blobs=len(manifest.missing_blobs),
        audit_entry_id=entry,
    )


# -- restore ---------------------------------------------------------------------------------------

_FOREIGN = "this is not a vigil backup"


def _member_path(root: Path, name: str) -> Path:
    """Where member ``name`` goes under ``root``; anything but the known names is refused."""
    if name in (MANIFEST, CATALOG, PSEUDONYM_KEY) or _BLOB.match(name):
        return root / name
    raise InputError(f"{_FOREIGN}: it holds an unexpected member {name[:120]!r}", hint=envelope._WHOLE)


def _unpack(stream: IO[bytes], root: Path) -> dict[str, str]:
    """Write every member under ``root``; their sha256 by name."""
    hashes: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile() or member.name in hashes:
                    raise InputError(f"{_FOREIGN}: member {member.name[:120]!r} is not a plain file")
                target = _member_path(root, member.name)
                src = tar.extractfile(member)
                assert src is not None
                target.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with target.open("wb") as fh:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        fh.write(chunk)
                hashes[member.name] = h.hexdigest()
    except (tarfile.TarError, EOFError) as exc:
        raise InputError(f"the backup is truncated or {_FOREIGN} ({exc})", hint=envelope._WHOLE) from exc
    return hashes


def _check(root: Path, hashes: dict[str, str]) -> BackupManifest:
    if MANIFEST not in hashes:
        raise InputError(f"the backup has no manifest: it is truncated, or {_FOREIGN}", hint=envelope._WHOLE)
    try:
        manifest = BackupManifest.model_validate_json((root / MANIFEST).read_bytes())
    except ValidationError as exc:
        raise InputError(f"{_FOREIGN}: its manifest is unreadable", hint=envelope._WHOLE) from exc
    if manifest.format != FORMAT or manifest.format_version != 1:
        raise InputError(
            f"{_FOREIGN} of a format this vigil reads ({manifest.format} {manifest.format_version})"
        )
    got = {k: v for k, v in hashes.items() if k != MANIFEST}
    for name in sorted(set(got) | set(manifest.members)):
        if got.get(name) != manifest.members.get(name):
            problem = (
                "is missing"
                if name not in got
                else "was not listed"
                if name not in manifest.members
                else ("does not match its sha256 (altered)")
            )
            raise InputError(f"the backup's member {name!r} {problem}", hint=envelope._WHOLE)
    if CATALOG not in got:
        raise InputError("the backup holds no catalog", hint=envelope._WHOLE)
    return manifest


def _check_blobs(root: Path, key: str | None) -> None:
    """Each blob's plain content hashes to its name (sealed ones are opened with ``key``)."""
    cipher = crypto.Cipher(key) if key else None
    for path in (root / "blobs").glob("*/*"):
        data = path.read_bytes()
        if crypto.is_encrypted(data):
            if cipher is None:
                continue  # checked by its member hash; opened once the key is set
            data = cipher.decrypt(data)
        if hashlib.sha256(data).hexdigest() != path.parent.name + path.name:
            raise InputError(f"the backup's photo {path.parent.name}{path.name} does not match its content")


@dataclass
class _Catalog:
    db: Database


def _finish(root: Path, manifest: BackupManifest, file: Path, actor: str) -> int:
    """Open (and migrate) the restored catalog, verify its audit chain, append ``backup_restore``."""
    (root / "vigil.db").unlink(missing_ok=True)
    os.replace(root / CATALOG, root / "vigil.db")
    (root / "catalog").rmdir()
    (root / MANIFEST).unlink()
    try:
        db = Database(f"sqlite:///{root / 'vigil.db'}")
    except ConfigError as exc:
        raise InputError(
            f"the backup's catalog does not open: {exc.message}", hint="a backup from a newer vigil? update"
        ) from exc
    try:
        cat = _Catalog(db)
        report = audit.verify(cat)
        if not report.ok or report.head_hash != manifest.audit_head:
            raise InputError(
                f"the backup's audit log does not verify (entry {report.first_broken_id}: {report.problem})",
                hint=envelope._WHOLE,
            )
        audit.record(
            cat,
            actor,
            "backup_restore",
            target_type="backup",
            target_name=file.name,
            created_at=manifest.created_at,
            vigil_version=manifest.vigil_version,
            schema_revision=manifest.schema_revision,
            counts=manifest.counts,
            audit_head=manifest.audit_head,
        )
        return audit.count(cat)
    finally:
        db.close()


def _target_ready(data_dir: Path) -> None:
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise ConflictError(
            f"{data_dir} is not an empty folder; a backup is restored only into an empty data directory",
            hint="name a new folder with --data-dir (move the old one away first if it is to be replaced)",
        )


@contextmanager
def _opened(file: Path, key: str | None) -> Iterator[IO[bytes]]:
    try:
        fh: BinaryIO = file.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read the backup {file}: {exc.strerror}") from exc
    with fh:
        header = envelope.read_header(fh)
        if header is None:
            yield fh
            return
        if key is None:
            raise ConfigError(
                "this backup is encrypted and no key is set",
                hint="set VIGIL_ENCRYPTION_KEY to the key of the catalog it was made from",
            )
        yield envelope.OpeningReader(fh, header, key)  # type: ignore[misc]


def restore_backup(
    file: Path, data_dir: Path, *, actor: str = audit.SYSTEM, key: str | None = None
) -> RestoreInfo:
    """Restore the backup ``file`` into ``data_dir``, which must be empty or absent. ``key``: the
    ``VIGIL_ENCRYPTION_KEY`` the backup was made under (needed for an encrypted one).

    Every member is checked against the manifest, the photos against their content address, the audit
    chain is verified, and ``backup_restore`` is appended to the restored log. On any error nothing
    is left behind."""
    data_dir = data_dir.expanduser().absolute()
    _target_ready(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restoring-", dir=data_dir.parent))
    try:
        with _opened(file, key) as stream:
            hashes = _unpack(stream, staging)
        manifest = _check(staging, hashes)
        _check_blobs(staging, key)
        entries = _finish(staging, manifest, file, actor)
        _target_ready(data_dir)
        if data_dir.exists():
            data_dir.rmdir()
        os.replace(staging, data_dir)
        _fsync_dir(data_dir.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RestoreInfo(
        data_dir=str(data_dir),
        created_at=manifest.created_at,
        counts=manifest.counts,
        audit_entries=entries,
        model_packs=manifest.model_packs,
    )
