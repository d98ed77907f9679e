"""`vigil camera add --strangers ...`, `vigil camera strangers` and `vigil watch` raising a stranger alarm,
through the CLI with the real models and the real clip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def test_stranger_rule_from_the_cli_and_a_stranger_alarm(run, people: Path, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "crew", "--kind", "reference")
    run("enroll", "Alex Lacamoire", str(people / "alex-lacamoire.png"), "--gallery", "crew")
    media = run.data_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    clip = media / "stage.mp4"
    shutil.copy(shared_data / "video" / "short_hamilton_clip.mp4", clip)
    out, _ = run(
        "camera",
        "add",
        "stage",
        str(clip),
        "--strangers",
        "crew",
        "--stranger-hours",
        "22:00-06:00",
        "--json",
    )
    assert json.loads(out)["strangers"] == {
        "galleries": ["crew"],
        "hours": "22:00-06:00",
        "min_quality": None,
    }
    out, _ = run("camera", "strangers", "stage", "--galleries", "crew", "--json")  # always, from now on
    assert json.loads(out)["strangers"]["hours"] is None
    assert "crew" in run("camera", "list")[0]
    out, _ = run("watch", "--camera", "stage", "--json")
    alarms = [e for e in map(json.loads, out.splitlines()) if e.get("type") == "alarm"]
    # Lin-Manuel Miranda (not in "crew") in close-up; his wide shot is too small to be a stranger.
    assert [(a["kind"], a["identity"], a["galleries_checked"]) for a in alarms] == [
        ("stranger", None, ["crew"])
    ]
    assert "crop_jpeg" not in alarms[0]  # the public form
    out, _ = run("camera", "strangers", "stage", "--off")
    assert "no stranger rule" in out
    assert json.loads(run("camera", "list", "--json")[0])[0]["strangers"] is None


def test_bad_stranger_rules_from_the_cli(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    run("camera", "add", "door", "rtsp://127.0.0.1:9/x")
    _, err = run("camera", "strangers", "door", "--galleries", "staff,nobody", code=5)
    assert "no gallery named 'nobody'" in err
    _, err = run("camera", "strangers", "door", "--galleries", "staff", "--hours", "mon-fri 9-5", code=3)
    assert "stranger_hours" in err
    _, err = run("camera", "add", "door2", "rtsp://127.0.0.1:9/x", "--stranger-hours", "08:00-09:00", code=2)
    assert "--strangers" in err
    run("camera", "strangers", "door", code=2)  # neither --galleries nor --off
    run("camera", "strangers", "nowhere", "--off", code=5)
    assert json.loads(run("camera", "list", "--json")[0])[0]["strangers"] is None
