"""The command line: JSON contracts, bad input with clear errors and exit codes, and nothing lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vigil.cli import cli

FUTURE = (date.today() + timedelta(days=30)).isoformat()


def test_gallery_commands_and_json(run) -> None:  # type: ignore[no-untyped-def]
    out, _ = run(
        "gallery",
        "create",
        "wanted",
        "--kind",
        "watchlist",
        "--purpose",
        "case 7",
        "--legal-basis",
        "court order 7",
        "--authorized-by",
        "Judge Dredd",
        "--expires",
        FUTURE,
        "--json",
    )
    created = json.loads(out)
    assert created["name"] == "wanted" and created["kind"] == "watchlist" and created["expires_on"] == FUTURE
    run("gallery", "create", "staff", "--kind", "reference")
    listed = json.loads(run("gallery", "list", "--json")[0])
    assert [g["name"] for g in listed] == ["staff", "wanted"]
    shown = json.loads(run("gallery", "show", "wanted", "--json")[0])
    assert shown["legal_basis"] == "court order 7"
    run("gallery", "delete", "staff", "--yes")
    assert [g["name"] for g in json.loads(run("gallery", "list", "--json")[0])] == ["wanted"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["gallery", "create", "w", "--kind", "watchlist"], 3, "legal basis"),
        (
            [
                "gallery",
                "create",
                "w",
                "--kind",
                "watchlist",
                "--purpose",
                "p",
                "--legal-basis",
                "l",
                "--authorized-by",
                "a",
            ],
            3,
            "--expires",
        ),
        (["gallery", "create", "w", "--kind", "reference", "--expires", "tomorrow"], 3, "YYYY-MM-DD"),
        (["gallery", "show", "ghost"], 5, "no gallery named 'ghost'"),
        (["gallery", "delete", "ghost", "--yes"], 5, "no gallery named"),
        (["people", "remove", "nobody", "--gallery", "ghost"], 5, "no gallery"),
    ],
)
def test_bad_gallery_input(run, args: list[str], code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    _, err = run(*args, code=code)
    assert message in err


def test_enroll_verify_identify_json(run, people: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    out, _ = run(
        "enroll",
        "Barack Obama",
        str(people / "obama.jpg"),
        str(people / "obama3.jpg"),
        "--gallery",
        "staff",
        "--json",
    )
    enrolled = json.loads(out)
    assert enrolled["created"] and [p["status"] for p in enrolled["photos"]] == ["enrolled", "enrolled"]
    again = json.loads(
        run("enroll", "Barack Obama", str(people / "obama.jpg"), "--gallery", "staff", "--json")[0]
    )
    assert again["photos"][0]["status"] == "already-enrolled"
    run("enroll", "Joe Biden", str(people / "biden.jpg"), "--gallery", "staff")

    verify = json.loads(run("verify", str(people / "obama.jpg"), str(people / "obama2.jpg"), "--json")[0])
    assert set(verify) >= {"same_person", "score", "threshold", "model"}
    assert verify["same_person"] is True and isinstance(verify["score"], float)
    verify = json.loads(run("verify", str(people / "obama.jpg"), str(people / "biden.jpg"), "--json")[0])
    assert verify["same_person"] is False

    ident = json.loads(run("identify", str(people / "two_people.jpg"), "--gallery", "staff", "--json")[0])
    assert len(ident["faces"]) == 2
    for face in ident["faces"]:
        assert len(face["xyxy"]) == 4 and isinstance(face["quality"], float)
        assert {"identity", "gallery", "score"} <= set(face["matches"][0])
    assert sorted(f["decision"] for f in ident["faces"]) == ["Barack Obama", "Joe Biden"]

    people_list = json.loads(run("people", "list", "--json")[0])
    assert {p["name"]: p["templates"] for p in people_list} == {"Barack Obama": 2, "Joe Biden": 1}
    run("people", "remove", "Joe Biden", "--gallery", "staff")
    ident = json.loads(run("identify", str(people / "biden.jpg"), "--json")[0])
    assert ident["faces"][0]["decision"] is None


def test_bad_image_input(run, people: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (300, 300), "white").save(blank)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)
    cases = [
        (["enroll", "X", str(text), "--gallery", "staff"], "not an image file"),
        (["enroll", "X", str(tmp_path / "missing.jpg"), "--gallery", "staff"], "no such file"),
        (["enroll", "X", str(bomb), "--gallery", "staff"], "decompression bomb"),
        (["enroll", "X", str(blank), "--gallery", "staff"], "no face found"),
        (["enroll", "X", str(people / "two_people.jpg"), "--gallery", "staff"], "2 faces found"),
        (["enroll", "X", str(people / "obama.jpg"), "--gallery", "ghost"], "no gallery named 'ghost'"),
        (["verify", str(blank), str(people / "obama.jpg")], "no face found"),
        (["identify", str(text)], "not an image file"),
        (["identify", str(blank), "--gallery", "staff"], "no face found"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(cli, ["--data-dir", str(run.data_dir), *args])
        assert result.exit_code != 0, args
        assert message in result.stderr, (args, result.stderr)
    # nothing was stored by the failed calls
    assert json.loads(run("gallery", "show", "staff", "--json")[0])["templates"] == 0
    # --largest accepts the group photo
    run("enroll", "X", str(people / "two_people.jpg"), "--gallery", "staff", "--largest")


def test_enroll_dir_reports_bad_photos_and_enrols_the_rest(run, people: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "people"
    (root / "Obama").mkdir(parents=True)
    (root / "Biden").mkdir()
    (root / "Obama" / "a.jpg").write_bytes((people / "obama.jpg").read_bytes())
    (root / "Obama" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "Biden" / "b.jpg").write_bytes((people / "biden.jpg").read_bytes())
    run("gallery", "create", "staff", "--kind", "reference")
    out, err = run("enroll-dir", str(root), "--gallery", "staff", "--json", code=3)
    summary = json.loads(out.splitlines()[-1])  # one line per person, then the summary
    assert summary["enrolled_photos"] == 2 and len(summary["errors"]) == 1
    assert "broken.jpg" in summary["errors"][0]["path"]
    _, err = run("enroll-dir", str(tmp_path / "nowhere"), "--gallery", "staff", code=3)
    assert "is not a folder" in err


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.mark.slow
def test_killed_enroll_dir_leaves_a_consistent_catalog(shared_data: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "VIGIL_DATA_DIR": str(data_dir)}
    vigil = [sys.executable, "-m", "vigil"]
    subprocess.run([*vigil, "gallery", "create", "celebs", "--kind", "reference"], env=env, check=True)
    proc = subprocess.Popen(
        [*vigil, "enroll-dir", str(shared_data / "deepface-13"), "--gallery", "celebs"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = data_dir / "vigil.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if _count(db, "SELECT count(*) FROM identities") >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    identities = _count(db, "SELECT count(*) FROM identities")
    templates = _count(db, "SELECT count(*) FROM templates")
    assert 3 <= identities < 13
    # every identity has its templates and photos (one transaction per person), no orphans
    assert (
        _count(
            db,
            "SELECT count(*) FROM identities i WHERE NOT EXISTS "
            "(SELECT 1 FROM templates t WHERE t.identity_id = i.id)",
        )
        == 0
    )
    assert _count(db, "SELECT count(*) FROM templates WHERE photo_id IS NULL") == 0
    # the index rebuilds to match the catalog, and the run can be resumed
    out = subprocess.run(
        [*vigil, "identify", str(shared_data / "people" / "obama.jpg"), "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(out)["galleries"] == ["celebs"]
    meta = next((data_dir / "index").glob("*.json"))
    assert json.loads(meta.read_text())["count"] == templates
    resumed = subprocess.run(
        [*vigil, "enroll-dir", str(shared_data / "deepface-13"), "--gallery", "celebs", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _count(db, "SELECT count(*) FROM identities") == 13
    assert json.loads(resumed.stdout.splitlines()[-1])["already_enrolled_photos"] >= templates


def test_doctor_reports_versions_providers_card_and_a_benchmark(run) -> None:  # type: ignore[no-untyped-def]
    out, _ = run("doctor", "--json")
    report = json.loads(out)
    assert report["packages"]["dlib-bin"] and report["packages"]["onnxruntime"]
    assert "CPUExecutionProvider" in report["onnxruntime_providers"]
    assert (
        report["model_card"]["id"] == "dlib-resnet-v1" and report["model_card"]["calibrated_on"] == "lfw-dev"
    )
    bench = report["self_benchmark"]
    assert bench["detections_per_s"] > 0 and bench["embeddings_per_s"] > 0
    out, _ = run("doctor", "--no-bench", "--json")
    assert "self_benchmark" not in json.loads(out)
