"""`vigil enroll-dir` reports each person as soon as they are stored: a run killed half-way leaves a log
that names who was enrolled, and the catalog has them."""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

VIGIL = [sys.executable, "-m", "vigil"]


def _identities(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM identities")}


def _first_line_then_kill(
    cmd: list[str], env: dict[str, str], timeout_s: float = 120
) -> tuple[list[str], int]:
    """Run ``cmd`` with stdout to a pipe and SIGKILL it once it has written a line: (its log, exit code)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        log = [lines.get(timeout=timeout_s)]
    except queue.Empty:
        proc.kill()
        proc.wait()
        pytest.fail(f"enroll-dir wrote nothing in {timeout_s} s")
    proc.kill()
    code = proc.wait()
    reader.join(timeout=10)
    while not lines.empty():
        log.append(lines.get())
    return log, code


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_killed_enroll_dir_has_logged_whom_it_enrolled(
    shared_data: Path, tmp_path: Path, as_json: bool
) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "VIGIL_DATA_DIR": str(data_dir)}
    subprocess.run([*VIGIL, "gallery", "create", "celebs", "--kind", "reference"], env=env, check=True)
    folder = shared_data / "deepface-13"
    first = sorted(p.name for p in folder.iterdir() if p.is_dir())[0]
    cmd = [*VIGIL, "enroll-dir", str(folder), "--gallery", "celebs", *(["--json"] if as_json else [])]
    log, code = _first_line_then_kill(cmd, env)
    assert code == -9, f"the run ended by itself ({code}) before it was killed: {log}"
    if as_json:
        line = json.loads(log[0])
        assert line["type"] == "person" and line["person"] == first
        assert line["result"]["identity"] == first and line["result"]["photos"]
        assert all(json.loads(later)["type"] == "person" for later in log[1:])
    else:
        assert log[0].startswith(f"enrolled '{first}': "), log
        assert "photos enrolled" in log[0]
    enrolled = _identities(data_dir / "vigil.db")
    assert first in enrolled
    assert len(enrolled) >= len(log)  # everyone reported was stored
    assert len(enrolled) < 13  # the run was cut short


def test_enroll_dir_reports_each_person_then_the_summary(run, people: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "people"
    for person, photo in (("Biden", "biden.jpg"), ("Obama", "obama.jpg")):
        (root / person).mkdir(parents=True)
        (root / person / photo).write_bytes((people / photo).read_bytes())
    (root / "Nobody").mkdir()
    (root / "Nobody" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    run("gallery", "create", "staff", "--kind", "reference")
    out, err = run("enroll-dir", str(root), "--gallery", "staff", "--json", code=3)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["type"], x.get("person")) for x in lines] == [
        ("person", "Biden"),
        ("person", "Nobody"),
        ("person", "Obama"),
        ("summary", None),
    ]
    assert lines[1]["result"] is None and "broken.jpg" in lines[1]["errors"][0]["path"]
    summary = lines[-1]
    assert summary["people"] == 2 and summary["enrolled_photos"] == 2 and summary["skipped_photos"] == 1
    out, err = run("enroll-dir", str(root), "--gallery", "staff", code=3)
    assert out.splitlines() == [
        "updated 'Biden': 0 photos enrolled, 1 already enrolled, 0 skipped",
        "not enrolled 'Nobody': no usable photo (1 skipped)",
        "updated 'Obama': 0 photos enrolled, 1 already enrolled, 0 skipped",
        "2 people, 0 photos enrolled, 2 already enrolled, 1 skipped",
    ]
    assert "broken.jpg" in err
