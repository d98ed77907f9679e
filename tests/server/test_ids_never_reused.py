"""Issue 16.1: a gallery deleted and recreated by another process must never be answered from the
server's cached index of the old one (ids are never reused; a cache never outlives what it caches)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import Server


def _cli(server: Server, *args: str) -> str:
    env_args = [sys.executable, "-m", "vigil", "--data-dir", str(server.data_dir), *args]
    done = subprocess.run(env_args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _search(server: Server, gallery: str, photo: Path) -> list[str | None]:
    with server.client("operator") as c, photo.open("rb") as fh:
        r = c.post("/api/search", params={"gallery": gallery}, files={"file": (photo.name, fh, "image/jpeg")})
    assert r.status_code == 200, r.text
    return [f["decision"] for f in r.json()["faces"]]


def test_recreated_gallery_is_not_answered_from_the_old_index(server: Server, people: Path) -> None:
    _cli(server, "gallery", "create", "tmpA", "--kind", "reference")
    _cli(server, "enroll", "Barack Obama", str(people / "obama.jpg"), "--gallery", "tmpA")
    assert _search(server, "tmpA", people / "obama2.jpg") == ["Barack Obama"]  # the server caches tmpA

    old_id = _cli(server, "gallery", "show", "tmpA", "--json")
    _cli(server, "gallery", "delete", "tmpA", "--yes")
    _cli(server, "gallery", "create", "tmpB", "--kind", "reference")
    new_id = _cli(server, "gallery", "show", "tmpB", "--json")
    assert old_id != new_id
    _cli(server, "enroll", "Joe Biden", str(people / "biden.jpg"), "--gallery", "tmpB")

    assert _search(server, "tmpB", people / "obama3.jpg") == [None]
    assert _search(server, "tmpB", people / "biden.jpg") == ["Joe Biden"]
