"""The edge devices panel of the admin page, in a real browser (Chromium driven by Playwright) against a
real `vigil serve`: a device added shows its one-time token and the command to run on the device once;
the device pairs and reports over HTTP as a worker does, and the panel shows it online with its
version, queue depth and camera; revoked from the panel, it is refused at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from harness import Server
from test_ui import browser, go, login, page, screenshot  # noqa: F401 (fixtures)

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

REFRESH_MS = 15_000
"""The panel refreshes every 5 s."""


def test_the_devices_panel_adds_shows_and_revokes(server: Server, page: Any) -> None:  # noqa: F811
    login(page, server, "admin")
    go(page, "Users & keys")
    panel = page.get_by_role("region", name="Edge devices")
    expect(panel).to_contain_text("No edge devices.")
    panel.get_by_label("Device name").fill("pole-ui")
    panel.get_by_label("Site").fill("market-street")
    panel.get_by_role("button", name="Add device").click()
    dialog = page.get_by_role("dialog", name="Device pole-ui added")
    token = dialog.get_by_label("Pairing token", exact=True).inner_text().strip()
    assert token.startswith("vgp_")
    expect(dialog.get_by_label("Command", exact=True)).to_have_text(
        f"vigil worker --server {server.url} --token {token}"
    )
    expect(dialog).to_contain_text("shown once")
    screenshot(page, "devices-token")
    dialog.get_by_role("button", name="Done").click()
    row = panel.get_by_role("table", name="Edge devices").get_by_role("row").filter(has_text="pole-ui")
    expect(row).to_contain_text("pending")
    expect(row).to_contain_text("never")

    # A new token replaces the first (say it was lost before the device paired).
    row.get_by_role("button", name="New pairing token for pole-ui").click()
    dialog = page.get_by_role("dialog", name="New pairing token")
    first, token = token, dialog.get_by_label("Pairing token", exact=True).inner_text().strip()
    assert token.startswith("vgp_") and token != first
    dialog.get_by_role("button", name="Done").click()
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.post("/api/fleet/pair", json={"token": first}).status_code == 401

    # The device pairs and reports, as `vigil worker` does.
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        pairing = anon.post("/api/fleet/pair", json={"token": token, "version": "9.9.1"}).json()
    device = {"Authorization": f"Device {pairing['credential']}"}
    with server.client("admin") as admin:
        r = admin.post(
            "/api/cameras", json={"name": "pole-ui-street", "url": "/on/the/pole.mp4", "device": "pole-ui"}
        )
        assert r.status_code == 201, r.text
    with httpx.Client(base_url=server.url, headers=device, timeout=30) as dev:
        beat = {"version": "9.9.1", "queue_depth": 4, "cameras": {"pole-ui-street": {"state": "running"}}}
        assert dev.post("/api/fleet/heartbeat", json=beat).status_code == 200
        expect(row).to_contain_text("online", timeout=REFRESH_MS)
        expect(row).to_contain_text("9.9.1")
        expect(row).to_contain_text("pole-ui-street")
        expect(row.get_by_role("cell").nth(6)).to_have_text("4")
        screenshot(page, "devices-online")

        row.get_by_role("button", name="Revoke device pole-ui").click()
        page.get_by_role("dialog", name="Revoke device pole-ui?").get_by_role("button", name="Revoke").click()
        expect(row).to_contain_text("revoked")
        expect(row.get_by_role("button", name="Revoke device pole-ui")).to_have_count(0)
        expect(row.get_by_role("button", name="New pairing token for pole-ui")).to_have_count(0)
        refused = dev.get("/api/fleet/config")
        assert refused.status_code == 403 and "revoked" in refused.json()["detail"]
