"""`vigil devices add | list | token | revoke` and `vigil camera add --device`, through the CLI."""

from __future__ import annotations

import json

from vigil.app import App
from vigil.core.config import Settings
from vigil.fleet import devices as fleet


def test_add_prints_the_token_once_and_the_command_to_run(run) -> None:  # type: ignore[no-untyped-def]
    out, _ = run("devices", "add", "pole-17", "--site", "market-street", "--json")
    added = json.loads(out)
    assert added["device"]["name"] == "pole-17" and added["device"]["site"] == "market-street"
    assert added["device"]["state"] == "pending" and added["device"]["keeps_templates"] is True
    assert added["token"].startswith("vgp_")
    human, _ = run("devices", "add", "pole-18", "--site", "market-street", "--server", "http://10.0.0.5:8080")
    assert "shown once" in human
    token = next(w for w in human.split() if w.startswith("vgp_"))
    assert f"vigil worker --server http://10.0.0.5:8080 --token {token}" in human
    app = App(Settings(data_dir=run.data_dir))  # the token pairs (the API's pair route calls this)
    try:
        assert fleet.pair_device(app, token, version="1").device == "pole-18"
    finally:
        app.close()
    listed = {d["name"]: d["state"] for d in json.loads(run("devices", "list", "--json")[0])}
    assert listed == {"pole-17": "pending", "pole-18": "active"}


def test_list_revoke_and_errors(run) -> None:  # type: ignore[no-untyped-def]
    run("devices", "add", "pole-1", "--site", "s", "--no-templates")
    _, err = run("devices", "add", "pole-1", "--site", "s", code=6)
    assert "already exists" in err
    _, err = run("devices", "add", "a/b", "--site", "s", code=3)
    assert "'/'" in err
    listed = json.loads(run("devices", "list", "--json")[0])
    assert [(d["name"], d["keeps_templates"], d["online"]) for d in listed] == [("pole-1", False, False)]
    assert "pole-1" in run("devices", "list")[0]
    out, _ = run("devices", "token", "pole-1", "--json")
    assert json.loads(out)["token"].startswith("vgp_")
    out, _ = run("camera", "add", "street", "/media/on/the/pole.mp4", "--device", "pole-1", "--json")
    cam = json.loads(out)
    assert (cam["device"], cam["site"]) == ("pole-1", "s")
    _, err = run("camera", "add", "other", "/x.mp4", "--device", "nobody", code=5)
    assert "vigil devices list" in err
    assert json.loads(run("devices", "list", "--json")[0])[0]["cameras"] == ["street"]
    assert "pole-1" in run("camera", "list")[0]
    out, _ = run("devices", "revoke", "pole-1")
    assert "revoked" in out
    _, err = run("devices", "revoke", "pole-1", code=6)
    assert "already revoked" in err
    _, err = run("devices", "revoke", "nobody", code=5)
    assert json.loads(run("devices", "list", "--json")[0])[0]["state"] == "revoked"
