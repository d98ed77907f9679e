"""The face models panel of the admin page, in a real browser (Chromium driven by Playwright) against a
real `vigil serve` on the custom pack: the packs with their licences and state, a switch to dlib asked
for with a confirmation that says the galleries will be re-embedded, its progress bar, a cancel, and
the switch done (the dlib pack active)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Server, start_server, stop_server
from test_model_switch_api import custom_env, enrol_lfw
from test_ui import browser, go, login, page, screenshot  # noqa: F401 (fixtures)

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

SWITCH_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def models_server(tmp_path_factory: pytest.TempPathFactory, shared_models: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui-models")
    env = custom_env(root)
    enrol_lfw(root / "data", env, 80)
    s = start_server(root / "data", env)
    yield s
    stop_server(s)


def confirm(pg: Any, dialog: str, button: str) -> None:
    pg.get_by_role("dialog", name=dialog).get_by_role("button", name=button).click()


def test_the_models_panel_switches_the_galleries_with_progress(models_server: Server, page: Any) -> None:  # noqa: F811
    login(page, models_server, "admin")
    go(page, "Users & keys")
    panel = page.get_by_role("region", name="Face models")
    packs = panel.get_by_role("table", name="Model packs")
    custom = packs.get_by_role("row").filter(has_text="your own ONNX models")
    expect(custom).to_contain_text("in use")
    edgeface = packs.get_by_role("row").filter(has_text="edgeface-xs")
    expect(edgeface).to_contain_text("not installed")
    expect(edgeface).to_contain_text("BSD-3-Clause")
    expect(edgeface.get_by_role("button", name="Install edgeface-xs")).to_be_visible()
    dlib = packs.get_by_role("row").filter(has_text="dlib HOG")
    expect(dlib).to_contain_text("Boost-1.0")

    # Asked for, then thought better of: nothing starts.
    dlib.get_by_role("button", name="Use dlib").click()
    dialog = page.get_by_role("dialog", name="Switch to dlib?")
    expect(dialog).to_contain_text("Every gallery will be re-embedded with dlib")
    dialog.get_by_role("button", name="Cancel").click()
    expect(panel.get_by_role("region", name="Model switch")).to_have_count(0)

    # Started, then cancelled while it runs: the models in use stay.
    dlib.get_by_role("button", name="Use dlib").click()
    confirm(page, "Switch to dlib?", "Re-embed and switch")
    progress = panel.get_by_role("region", name="Model switch")
    expect(progress.get_by_role("heading")).to_contain_text("Re-embedding the galleries with dlib")
    expect(progress.get_by_role("progressbar", name="Re-embedding progress")).to_be_visible()
    expect(progress).to_contain_text("of 80 photos")
    screenshot(page, "models-switch-running")
    progress.get_by_role("button", name="Cancel the switch").click()
    confirm(page, "Cancel the switch?", "Cancel the switch")
    expect(progress.get_by_role("heading")).to_contain_text("The switch to dlib was cancelled")
    expect(custom).to_contain_text("in use")

    # Started again: it goes on from what was done, to the end.
    dlib.get_by_role("button", name="Use dlib").click()
    confirm(page, "Switch to dlib?", "Re-embed and switch")
    expect(progress.get_by_role("heading")).to_contain_text("Switched to dlib", timeout=SWITCH_TIMEOUT_MS)
    expect(progress).to_contain_text("80 of 80 photos (100%), 1 of 1 gallery complete")
    expect(dlib).to_contain_text("active")
    expect(panel.get_by_role("status").first).to_contain_text(
        "The server uses custom, not the active pack dlib"
    )
    expect(dlib.get_by_role("button", name="Use dlib")).to_have_count(0)
    screenshot(page, "models-switch-done")
    with models_server.client("admin") as c:
        view = c.get("/api/models").json()
    assert view["active"] == "dlib" and view["switch"]["state"] == "done"
    failed = view["switch"]["photos_failed"]
    if failed:  # photos dlib's detector finds no face in are listed, to be replaced
        table = progress.get_by_role("table", name="Photos the new pack could not use")
        expect(table.get_by_role("row")).to_have_count(failed + 1)
