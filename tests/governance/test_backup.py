"""Backup and restore (docs/backup.md), on a catalog of real people enrolled with the real models and a
stored alarm: the round trip, a backup taken while a writer enrols, a backup killed with -9, refused
archives and targets, and an encrypted backup."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from vigil.app import App
from vigil.core import crypto
from vigil.core.config import Settings
from vigil.core.errors import ConfigError, ConflictError, InputError
from vigil.events.schemas import Alarm, new_event_id
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.governance import backup
from vigil.storage import audit
from vigil.storage.tables import AuditEntry, Photo, Template
from vigil.video import alarms, cameras
from vigil.vision.image import load_image

PEOPLE = {
    "Barack Obama": ["obama.jpg", "obama3.jpg"],
    "Joe Biden": ["biden.jpg"],
    "Lin-Manuel Miranda": ["lin-manuel-miranda.png"],
}
PROBES = {"obama2.jpg": "Barack Obama", "alex-lacamoire.png": None}


@pytest.fixture(autouse=True)
def _reset_cipher() -> Iterator[None]:
    yield
    crypto.configure(None)


def _populate(app: App, people: Path, shared_data: Path) -> None:
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
    for name, files in PEOPLE.items():
        enrolment.enroll(app, "staff", name, [load_image(people / f) for f in files])
    camera = cameras.add_camera(app, "door", str(shared_data / "video" / "short_hamilton_clip.mp4")).name
    with app.db.session() as s:
        iid = s.scalar(select(Photo.identity_id).limit(1))
    crop = (people / "obama.jpg").read_bytes()
    alarm = Alarm(
        event_id=new_event_id(),
        camera=camera,
        camera_id=None,
        gallery="staff",
        identity="Barack Obama",
        identity_id=iid,
        track_id=1,
        frame=1,
        ts=datetime.now(UTC),
        score=0.9,
        threshold=0.5,
        fpir=0.01,
        model=app.engine.model_id,
        xyxy=[1.0, 2.0, 3.0, 4.0],
        quality=0.8,
        latency_ms=1.0,
        crop_jpeg=crop[:4000] + b"crop",
    )
    assert alarms.store_alarm(app, alarm) is not None


def _decisions(app: App, people: Path) -> dict[str, str | None]:
    return {
        probe: matching.identify(app, load_image(people / probe), ["staff"]).faces[0].decision
        for probe in PROBES
    }


def _blob_files(data: Path) -> dict[str, str]:
    return {
        p.parent.name + p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (data / "blobs").glob("*/*")
        if not p.name.startswith(".")
    }


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".restoring-" in p.name or ".partial" in p.name)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, engine, people: Path, shared_data: Path) -> Path:  # type: ignore[no-untyped-def]
    """A data directory with the people and the alarm, made once; each test works on a copy."""
    data = tmp_path_factory.mktemp("backup-source") / "data"
    app = App(Settings(data_dir=data, media_dirs=[shared_data]), engine_override=engine)
    _populate(app, people, shared_data)
    app.close()
    return data


@pytest.fixture
def live(populated: Path, tmp_path: Path, engine, shared_data: Path) -> Iterator[App]:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    shutil.copytree(populated, data)
    app = App(Settings(data_dir=data, media_dirs=[shared_data]), engine_override=engine)
    yield app
    app.close()


def test_round_trip_restores_the_same_people_photos_and_audit_log(
    live: App, people: Path, tmp_path: Path, engine
) -> None:  # type: ignore[no-untyped-def]
    before = _decisions(live, people)
    assert before == PROBES
    steps: list[str] = []
    info = backup.create_backup(
        live, tmp_path / "b.vbk", actor="test:backup", on_progress=lambda s, d, t: steps.append(s)
    )
    assert {"catalog", "blobs", "write"} <= set(steps)
    assert info.sha256 == hashlib.sha256((tmp_path / "b.vbk").read_bytes()).hexdigest()
    assert not info.encrypted and info.counts["identities"] == 3 and info.counts["alarms"] == 1
    assert info.missing_blobs == 0 and info.counts["blobs"] == 5  # 4 photos and the alarm's crop
    last = audit.entries(live, newest_first=True, limit=1)[0]
    assert (last.action, last.actor, last.detail["sha256"]) == ("backup_create", "test:backup", info.sha256)
    assert _leftovers(tmp_path) == []
    with tarfile.open(tmp_path / "b.vbk") as tar:  # a plain backup is a tar an operator can list
        names = tar.getnames()
    assert names[-1] == "manifest.json" and "catalog/vigil.db" in names

    target = tmp_path / "restored"
    r = backup.restore_backup(tmp_path / "b.vbk", target, actor="test:restore")
    assert r.counts == info.counts and Path(r.data_dir) == target
    assert _blob_files(target) == _blob_files(live.settings.data_dir)
    again = App(Settings(data_dir=target), engine_override=engine)
    try:
        assert audit.verify(again).ok
        restored = audit.entries(again)
        assert (restored[-1].action, restored[-1].actor) == ("backup_restore", "test:restore")
        # the restored log is the live log up to the backup (the backup_create entry comes after)
        live_log = [e.hash for e in audit.entries(live)]
        assert [e.hash for e in restored[:-1]] == live_log[: len(restored) - 1]
        assert live_log[len(restored) - 1] == last.hash
        assert not (target / "index").exists()  # the indexes are rebuilt from the catalog on use
        assert _decisions(again, people) == before
        assert audit.verify(again).ok
        for sha in _blob_files(target):
            assert hashlib.sha256(again.blobs.get(sha)).hexdigest() == sha
    finally:
        again.close()


def test_a_backup_taken_while_a_writer_enrols_is_consistent(
    live: App, shared_data: Path, tmp_path: Path
) -> None:
    lfw = sorted((shared_data / "lfw-dev").iterdir())[:6]
    faces = [enrolment.prepare_face(live, load_image(next(d.iterdir())), largest=True) for d in lfw]
    stop = threading.Event()
    enrolled: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 300:
            gallery, face = f"w{i // len(faces)}", faces[i % len(faces)]
            if i % len(faces) == 0:  # a photo is enrolled once per gallery
                galleries.create_gallery(live, galleries.validate_spec(name=gallery, kind="reference"))
            enrolment.enroll_prepared(live, gallery, f"person {i}", [face], new=True)
            enrolled.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(enrolled) < 3:
            stop.wait(0.01)
        info = backup.create_backup(live, tmp_path / "b.vbk")
    finally:
        stop.set()
        t.join()
    during = len(enrolled)
    assert t.is_alive() is False and during > info.counts["identities"] - 3 >= 3  # it went on writing
    target = tmp_path / "restored"
    backup.restore_backup(tmp_path / "b.vbk", target)
    with sqlite3.connect(target / "vigil.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        photos = {sha for (sha,) in conn.execute("SELECT sha256 FROM photos")}
        n_templates = conn.execute("SELECT count(*) FROM templates").fetchone()[0]
        gen = conn.execute("SELECT generation FROM galleries WHERE name='staff'").fetchone()[0]
    assert photos <= set(_blob_files(target))  # every photo of the snapshot came with it
    assert n_templates == info.counts["templates"]
    restored = App(Settings(data_dir=target))
    try:
        assert audit.verify(restored).ok
        with restored.db.session() as s:
            assert s.scalar(select(Template.id).order_by(Template.id.desc()).limit(1)) is not None
        assert gen >= 1
    finally:
        restored.close()


KILLED = """
import sys, time
from pathlib import Path
from vigil.app import App
from vigil.core.config import Settings
from vigil.governance import backup

def pace(step, done, total):
    if step == "write" and done == 1:
        print("MIDWAY", flush=True)
        time.sleep(60)

app = App(Settings(data_dir=Path(sys.argv[1])))
backup.create_backup(app, Path(sys.argv[2]), on_progress=pace)
"""


def test_a_backup_killed_with_sigkill_leaves_no_complete_looking_file(live: App, tmp_path: Path) -> None:
    out = tmp_path / "b.vbk"
    data = live.settings.data_dir
    head = audit.verify(live)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(data), str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "MIDWAY"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert (tmp_path / "b.vbk.partial").exists()  # named partial, and it does not restore
    with pytest.raises(InputError, match=r"truncated|no manifest"):
        backup.restore_backup(tmp_path / "b.vbk.partial", tmp_path / "r1")
    assert not (tmp_path / "r1").exists()
    with sqlite3.connect(data / "vigil.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    after = audit.verify(live)
    assert after.ok and after.head_hash == head.head_hash  # the killed run wrote nothing to the log
    info = backup.create_backup(live, out)  # a later backup works, and clears what the killed one left
    assert _leftovers(tmp_path) == []
    backup.restore_backup(out, tmp_path / "r2")
    assert info.counts["identities"] == 3


def _tamper(src: Path, dst: Path, member: str) -> None:
    """A copy of the tar with one byte of ``member`` changed (the manifest left as it was)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == member:
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
            tout.addfile(m, io.BytesIO(data))


def _tar(dst: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(dst, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_truncated_tampered_and_foreign_archives_are_refused_leaving_nothing(
    live: App, tmp_path: Path
) -> None:
    good = tmp_path / "b.vbk"
    backup.create_backup(live, good)
    raw = good.read_bytes()
    cut = tmp_path / "cut.vbk"
    cut.write_bytes(raw[: len(raw) // 2])
    cut_end = tmp_path / "cut-end.vbk"
    # Into the last member itself: the end-of-archive blocks and the record padding are zeros, and
    # cutting only those would leave a valid archive.
    cut_end.write_bytes(raw.rstrip(b"\0")[:-512])
    tampered = tmp_path / "tampered.vbk"
    _tamper(good, tampered, "catalog/vigil.db")
    noise = tmp_path / "noise.vbk"
    noise.write_bytes(os.urandom(50_000))
    evil = tmp_path / "evil.vbk"
    _tar(evil, {"../../etc/evil": b"x", "manifest.json": b"{}"})
    link = tmp_path / "link.vbk"
    with tarfile.open(link, "w") as tar:
        info = tarfile.TarInfo("pseudonym.key")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    control = tmp_path / "control.vbk"
    _tar(control, {"blobs/\x1b[31m/" + "a" * 5000: b"x"})
    foreign = tmp_path / "foreign.vbk"
    _tar(foreign, {"manifest.json": b'{"hello": "world"}'})
    empty = tmp_path / "empty.vbk"
    empty.write_bytes(b"")
    cases = {
        cut: "truncated",
        cut_end: "truncated|no manifest",
        tampered: "catalog/vigil.db.*does not match its sha256",
        noise: "not a vigil backup",
        evil: "unexpected member",
        link: "not a plain file",
        control: "unexpected member",
        foreign: "manifest is unreadable",
        empty: "truncated|not a vigil backup",
        tmp_path / "absent.vbk": "cannot read the backup",
    }
    for archive, problem in cases.items():
        target = tmp_path / f"to-{archive.stem}"
        with pytest.raises(InputError, match=problem):
            backup.restore_backup(archive, target)
        assert not target.exists(), archive
    assert _leftovers(tmp_path) == []
    assert not (tmp_path.parent / "etc").exists()


def test_a_non_empty_target_or_an_existing_out_is_refused(live: App, tmp_path: Path) -> None:
    out = tmp_path / "b.vbk"
    backup.create_backup(live, out)
    with pytest.raises(ConflictError, match="already exists"):
        backup.create_backup(live, out)
    with pytest.raises(InputError, match="does not exist"):
        backup.create_backup(live, tmp_path / "no-such-folder" / "b.vbk")
    with pytest.raises(ConflictError, match="not an empty folder"):
        backup.restore_backup(out, live.settings.data_dir)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(ConflictError, match="not an empty folder"):
        backup.restore_backup(out, busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    backup.restore_backup(out, empty)  # an empty folder is fine
    assert (empty / "vigil.db").is_file()


def test_encrypted_backup_holds_no_plaintext_and_restores_only_with_the_key(
    tmp_path: Path, engine, people: Path, shared_data: Path
) -> None:  # type: ignore[no-untyped-def]
    key = crypto.new_key()
    app = App(
        Settings(data_dir=tmp_path / "data", encryption_key=key, media_dirs=[shared_data]),
        engine_override=engine,
    )
    try:
        _populate(app, people, shared_data)
        vectors = [enrolment.load_templates(app, 1, app.engine.card.id)[1][i].tobytes() for i in range(4)]
        info = backup.create_backup(app, tmp_path / "b.vbk")
    finally:
        app.close()
    assert info.encrypted
    raw = (tmp_path / "b.vbk").read_bytes()
    assert raw.startswith(b"VIGILBAK")
    for vector in vectors:
        assert vector[:32] not in raw  # no template in clear
    for f in ("obama.jpg", "biden.jpg"):
        assert (people / f).read_bytes()[1000:1064] not in raw  # no photo in clear
    assert b"Barack Obama" not in raw and b"SQLite format 3" not in raw  # not even the catalog's names

    with pytest.raises(ConfigError, match="encrypted and no key"):
        backup.restore_backup(tmp_path / "b.vbk", tmp_path / "r0")
    with pytest.raises(InputError, match="does not open with VIGIL_ENCRYPTION_KEY"):
        backup.restore_backup(tmp_path / "b.vbk", tmp_path / "r1", key=crypto.new_key())
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 1
    (tmp_path / "flipped.vbk").write_bytes(bytes(flipped))
    with pytest.raises(InputError, match=r"does not open|altered"):
        backup.restore_backup(tmp_path / "flipped.vbk", tmp_path / "r2", key=key)
    (tmp_path / "cut.vbk").write_bytes(raw[:-100])
    with pytest.raises(InputError, match="truncated"):
        backup.restore_backup(tmp_path / "cut.vbk", tmp_path / "r3", key=key)
    assert not any((tmp_path / f"r{i}").exists() for i in range(4))

    target = tmp_path / "restored"
    backup.restore_backup(tmp_path / "b.vbk", target, key=key)
    again = App(Settings(data_dir=target, encryption_key=key), engine_override=engine)
    try:
        with again.db.session() as s:
            assert (
                s.scalar(select(AuditEntry.action).order_by(AuditEntry.id.desc()).limit(1))
                == "backup_restore"
            )
        assert _decisions(again, people) == PROBES
        assert audit.verify(again).ok
    finally:
        again.close()


def test_the_cli_backs_up_and_restores_with_progress_and_refusals(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "visitors", "--kind", "reference", "--purpose", "test")
    out = tmp_path / "b.vbk"
    stdout, stderr = run("backup", "create", "--out", str(out))
    assert "NOT encrypted" in stdout and "sha256" in stdout and "catalog: 1/1" in stderr
    _, stderr = run("backup", "create", "--out", str(out), code=6)
    assert "already exists" in stderr
    _, stderr = run("backup", "restore", str(out), code=6)  # the data directory is not empty
    assert "not an empty folder" in stderr
    target = tmp_path / "restored"
    info = json.loads(run("backup", "restore", str(out), "--data-dir", str(target), "--json")[0])
    assert info["counts"]["galleries"] == 1
    stdout, _ = run("--data-dir", str(target), "audit", "verify")
    assert "audit log intact" in stdout
    assert "visitors" in run("--data-dir", str(target), "gallery", "list")[0]
    restored = run("--data-dir", str(target), "audit", "export", "--action", "backup_restore")[0]
    assert json.loads(restored.splitlines()[0])["actor"].startswith("cli:")
    assert run("audit", "export", "--action", "backup_restore")[0] == ""  # the live catalog has none
    (tmp_path / "junk.vbk").write_bytes(b"\x00" * 3000)
    _, stderr = run(
        "backup", "restore", str(tmp_path / "junk.vbk"), "--data-dir", str(tmp_path / "r"), code=3
    )
    assert "not a vigil backup" in stderr and not (tmp_path / "r").exists()
