"""`vigil models list | install | use | remove` and the packs in `vigil doctor`, on real model files."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

needs_converter = pytest.mark.skipif(
    importlib.util.find_spec("vigil.vision.edgeface.convert") is None,
    reason="the EdgeFace converter (vigil.vision.edgeface.convert) has not landed yet",
)
needs_switch_job = pytest.mark.skipif(
    importlib.util.find_spec("vigil.gallery.modelstate") is None,
    reason="the switch job (vigil.gallery.modelstate) has not landed yet",
)


def _packs(run) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    out, _ = run("models", "list", "--json")
    return {p["name"]: p for p in json.loads(out)}


def test_list_shows_licences_sources_sizes_states_and_the_caveat(run) -> None:  # type: ignore[no-untyped-def]
    packs = _packs(run)
    assert list(packs) == ["dlib", "edgeface-xs", "edgeface-xxs", "custom"]
    dlib, xs, xxs = packs["dlib"], packs["edgeface-xs"], packs["edgeface-xxs"]
    assert dlib["installed"] and dlib["in_use"] and not dlib["active"] and dlib["size_bytes"] is None
    assert dlib["accuracy"] and dlib["card_id"] == "dlib-resnet-v1"
    assert not xs["installed"] and not xs["in_use"] and xs["size_bytes"] == 2_993_451 + 322_906
    assert xxs["size_bytes"] == 1_734_661 + 322_906
    for p in (xs, xxs):
        assert "BSD-3-Clause (EdgeFace)" in p["licences"] and "otroshi/edgeface" in p["source"]
        assert "WebFace12M" in p["caveat"] and "research" in p["caveat"]
        assert {f["name"] for f in p["files"]} >= {"yunet_n_dynamic.onnx"}
        assert all(len(f["sha256"]) == 64 and f["url"].startswith("https://") for f in p["files"])
    assert not packs["custom"]["installed"]
    human, _ = run("models", "list")
    assert "WebFace12M" in human and "Boost-1.0" in human and "3.3 MB" in human


def test_install_shows_the_licence_first_and_refuses_a_tampered_file(  # type: ignore[no-untyped-def]
    run, shared_models: Path, tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    for name in ("edgeface_xs_q.pt", "yunet_n_dynamic.onnx"):
        shutil.copy(shared_models / name, usb / name)
    data = bytearray((usb / "edgeface_xs_q.pt").read_bytes())
    data[-100] ^= 0xFF
    (usb / "edgeface_xs_q.pt").write_bytes(bytes(data))
    out, err = run("models", "install", "edgeface-xs", "--from", str(usb), code=4)
    assert "BSD-3-Clause" in out and "WebFace12M" in out and "Apache-2.0" in out
    assert "has SHA-256" in err and "refused, nothing installed" in err
    assert not _packs(run)["edgeface-xs"]["installed"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("remove", "dlib"), 6, "cannot be removed"),
        (("remove", "edgeface-xxs"), 5, "is not installed"),
        (("install", "nope"), 5, "there is no model pack 'nope'"),
        (("use", "edgeface-xs"), 2, "vigil models install edgeface-xs"),
    ],
)
def test_clear_errors(run, args: tuple[str, ...], code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    _, err = run("models", *args, code=code)
    assert message in err


@needs_converter
@needs_switch_job
def test_install_use_and_remove(run, shared_models: Path) -> None:  # type: ignore[no-untyped-def]
    out, _ = run("models", "use", "dlib")  # first use, offline: dlib, recorded
    assert "dlib is already in use" in out
    out, _ = run("models", "install", "edgeface-xs", "--from", str(shared_models), "--json")
    assert json.loads(out)["installed"] is True
    out, _ = run("models", "use", "edgeface-xs", "--json")
    switch = json.loads(out)
    assert (switch["state"], switch["pack"], switch["from_pack"]) == ("done", "edgeface-xs", "dlib")
    packs = _packs(run)
    assert packs["edgeface-xs"]["active"] and packs["edgeface-xs"]["in_use"]
    _, err = run("models", "remove", "edgeface-xs", code=6)
    assert "active model pack" in err and "vigil models use" in err
    run("models", "use", "dlib")
    run("models", "remove", "edgeface-xs")
    assert not _packs(run)["edgeface-xs"]["installed"]
    out, _ = run("audit", "export")
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert "model_install" in actions and "model_remove" in actions


def test_doctor_lists_the_installed_packs_and_their_licences(run) -> None:  # type: ignore[no-untyped-def]
    out, _ = run("doctor", "--no-bench", "--json")
    packs = json.loads(out)["model_packs"]
    assert packs["in_use"] == "dlib"
    (dlib,) = packs["installed"]
    assert dlib["name"] == "dlib" and "Boost-1.0 (dlib)" in dlib["licences"]
    human, _ = run("doctor", "--no-bench")
    assert "model packs:" in human and "Boost-1.0" in human
