"""Issue 16.10: names, metadata, time zones, case references and photo names, checked in the services
so the API and the CLI refuse the same things; nothing is stored by a refused call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Server
from test_api import assert_problem, enrol

BAD_NAMES = [
    ("a/b", "'/'"),
    ("..", "'..'"),
    ("x\x00y", "U+0000"),
    ("evil\u202egnp.exe", "U+202E"),
    ("tab\there", "U+0009"),
    ("n" * 201, "201 characters"),
    ("   ", "empty"),
]


@pytest.mark.parametrize(("name", "words"), BAD_NAMES)
def test_gallery_names_that_break_urls_or_screens_are_422(server: Server, name: str, words: str) -> None:
    with server.client("supervisor") as c:
        r = c.post("/api/galleries", json={"name": name, "kind": "reference"})
        assert_problem(r, 422, words.lower())
        assert name.strip() not in [g["name"] for g in c.get("/api/galleries").json()]


def test_person_names_and_metadata_are_bounded(server: Server, people: Path) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "valid", "kind": "reference"}).status_code == 201
        assert_problem(enrol(c, "valid", "x" * 5000, people / "obama.jpg"), 422, "5,000 characters")
        assert_problem(enrol(c, "valid", "Ob\u202eama", people / "obama.jpg"), 422, "u+202e")
        big = json.dumps({f"k{i}": "v" * 100 for i in range(9000)})
        assert_problem(
            enrol(c, "valid", "Barack Obama", people / "obama.jpg", metadata=big), 422, "9,000 keys"
        )
        long_value = json.dumps({"note": "v" * 20_000})
        assert_problem(
            enrol(c, "valid", "Barack Obama", people / "obama.jpg", metadata=long_value), 422, "bytes"
        )
        assert c.get("/api/galleries/valid").json()["identities"] == 0
        ok = enrol(c, "valid", "AC/DC", people / "obama.jpg", metadata=json.dumps({"badge": "17"}))
        assert ok.status_code == 201, ok.text  # a person's name may hold a slash


def test_timestamps_carry_their_time_zone(server: Server) -> None:
    with server.client("supervisor") as c:
        c.post("/api/galleries", json={"name": "tz", "kind": "reference"})
        created = next(g for g in c.get("/api/galleries").json() if g["name"] == "tz")["created_at"]
    assert created.endswith(("+00:00", "Z")), created


def test_a_missing_case_reference_is_422_on_comparisons_as_on_searches(server: Server) -> None:
    with server.client("supervisor") as c:
        body = {"gallery_a": "valid", "gallery_b": "valid", "case": " "}
        assert_problem(c.post("/api/compare", json=body), 422, "case reference")
        r = c.post("/api/investigations/search", data={"identity_id": "1", "case": ""})
        assert_problem(r, 422, "case reference")


def test_cli_enrolment_keeps_the_file_name_not_the_server_path(server: Server, people: Path) -> None:
    cmd = [sys.executable, "-m", "vigil", "--data-dir", str(server.data_dir)]
    subprocess.run([*cmd, "gallery", "create", "paths", "--kind", "reference"], check=True, timeout=60)
    subprocess.run(
        [*cmd, "enroll", "Joe Biden", str(people / "biden.jpg"), "--gallery", "paths"],
        check=True,
        timeout=120,
    )
    with server.client("supervisor") as c:
        person = c.get("/api/galleries/paths/identities").json()
        identity = person[0] if isinstance(person, list) else person["items"][0]
        photos = c.get(f"/api/identities/{identity['id']}").json()["photo_list"]
    assert [p["original_name"] for p in photos] == ["biden.jpg"]
