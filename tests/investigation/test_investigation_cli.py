"""`vigil search` and `vigil clusters ...` on the seeded catalog."""

from __future__ import annotations

import json
from pathlib import Path

from sighting_seed import Seed, copy_seed


def test_search_cli_json_plot_and_case_required(run, seed: Seed, people: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy_seed(seed, run.data_dir)
    photo = str(people / "lin-manuel-miranda.png")
    window = ["--since", seed.since.isoformat(), "--until", seed.until.isoformat()]
    _, err = run("search", photo, *window, "--camera", "hall", code=3)
    assert "case reference" in err
    plot = tmp_path / "timeline.png"
    out, _ = run("search", photo, *window, "-c", "hall", "--case", "INC-7", "--plot", str(plot), "--json")
    result = json.loads(out)
    assert result["case"] == "INC-7" and len(result["hits"]) >= 2 and result["cameras"] == ["hall"]
    assert plot.read_bytes().startswith(b"\x89PNG")
    out, _ = run("search", "--identity", str(seed.lin_id), *window, "--case", "INC-7")
    assert "case INC-7:" in out and "hits in" in out
    audit = [
        json.loads(line)
        for line in run("audit", "export", "--action", "retrospective_search")[0].splitlines()
    ]
    assert [e["detail"]["case"] for e in audit] == ["INC-7", "INC-7"]


def test_clusters_cli(run, seed: Seed, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    copy_seed(seed, run.data_dir)
    report = json.loads(run("clusters", "update", "--json")[0])
    assert report["new_clusters"] == 3
    listed = json.loads(run("clusters", "list", "--json")[0])
    assert [c["size"] for c in listed] == [2, 2, 2]
    shown = json.loads(run("clusters", "show", str(listed[0]["id"]), "--json")[0])
    assert len(shown["members"]) == 2 and all(m["crop_sha256"] for m in shown["members"])
    assert "2 sightings on lobby" in run("clusters", "show", str(listed[0]["id"]))[0]
    run("gallery", "create", "visitors", "--kind", "reference", "--purpose", "test")
    promoted = json.loads(
        run(
            "clusters",
            "promote",
            str(listed[0]["id"]),
            "--gallery",
            "visitors",
            "--name",
            "Visitor 1",
            "--json",
        )[0]
    )
    assert promoted["enrolled"] >= 1 and promoted["identity"] == "Visitor 1"
    _, err = run("clusters", "promote", str(listed[0]["id"]), "-g", "visitors", "--name", "X", code=6)
    assert "already promoted" in err
    assert "dismissed" in run("clusters", "dismiss", str(listed[1]["id"]), "--reason", "staff")[0]
    assert len(json.loads(run("clusters", "list", "--state", "all", "--json")[0])) == 3
    run("clusters", "show", "999", code=5)
