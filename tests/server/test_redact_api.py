"""``/api/redactions`` against a real `vigil serve`: a supervisor redacts the first frames of the shared
hamilton clip (copied, trimmed, into a media folder), polls the job to done and downloads an MPEG-4
whose SHA-256 is the job's and the audit entry's; an operator is refused, bad input is a 422 naming
the field, an unknown job a 404, the download of a running job a 409 and a third running job a 429."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from harness import Server, start_server, stop_server, wait_for

from vigil import accounts
from vigil.app import App
from vigil.core.config import Settings
from vigil.server.routers.redact import MAX_RUNNING
from vigil.storage.tables import Role

FRAMES = 30


def _trim(source: Path, out: Path, frames: int) -> None:
    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok
        writer.write(frame)
    writer.release()
    cap.release()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("redact-api") / "data"
    (data / "media").mkdir(parents=True)
    _trim(shared_data / "video" / "short_hamilton_clip.mp4", data / "media" / "clip.mp4", FRAMES)
    s = start_server(data, {"VIGIL_START_CAMERAS": "false"})
    yield s
    stop_server(s)


def _done(c, job_id: str) -> dict | None:  # type: ignore[no-untyped-def, type-arg]
    job = c.get(f"/api/redactions/{job_id}").json()
    assert job["state"] != "failed", job
    return job if job["state"] == "done" else None


def test_a_supervisor_redacts_and_downloads_a_video(server: Server, tmp_path: Path) -> None:
    with server.client("supervisor") as c:
        r = c.post("/api/redactions", json={"source": str(server.data_dir / "media" / "clip.mp4")})
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["state"] == "running" and started["actor"] == "key:test-supervisor"
        job = wait_for(lambda: _done(c, started["id"]), timeout_s=120)
        result = job["result"]
        assert job["frames_done"] == job["frames_total"] == 2 * FRAMES
        assert result["frames"] == FRAMES and result["faces_blurred"] > 0
        r = c.get(result["download"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4"
    assert "clip-redacted.mp4" in r.headers["content-disposition"]
    digest = hashlib.sha256(r.content).hexdigest()
    assert digest == result["output_sha256"] == r.headers["x-output-sha256"]
    (tmp_path / "out.mp4").write_bytes(r.content)
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (360, 640, 3)
    with server.client("auditor") as c:
        entries = c.get("/api/audit", params={"action": "redact"}).json()
    assert entries[0]["actor"] == "key:test-supervisor"
    assert entries[0]["target_name"] == "clip.mp4"
    assert entries[0]["detail"]["output_sha256"] == digest


def test_a_file_that_is_no_video_fails_the_job_with_the_reason(server: Server) -> None:
    fake = server.data_dir / "media" / "notes.mp4"
    fake.write_text("not a video")
    with server.client("admin") as c:
        r = c.post("/api/redactions", json={"source": str(fake)})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        job = wait_for(lambda: (j := c.get(f"/api/redactions/{job_id}").json())["state"] != "running" and j)
        assert job["state"] == "failed" and "cannot open as a video" in job["error"], job
        r = c.get(f"/api/redactions/{job_id}/file")
        assert r.status_code == 404 and "has no output" in r.json()["detail"], r.text
    assert not (server.data_dir / "redactions" / f"{job_id}.mp4").exists()


def test_a_folder_is_refused(server: Server, shared_data: Path) -> None:
    with server.client("admin") as c:
        r = c.post("/api/redactions", json={"source": str(shared_data / "video")})
    assert r.status_code == 422, r.text
    assert "folders: use the CLI" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"source": "/etc/hostname"}, 422, "source: /etc/hostname: not inside a media folder"),
        ({"source": "rtsp://10.0.0.1/cam"}, 422, "source:"),
        ({"source": "MEDIA/none.mp4"}, 404, "source:"),
        ({"source": "MEDIA/" + "0" * 3000}, 422, "cannot be looked up"),
        ({"source": "MEDIA/a\u0000.mp4"}, 422, "source:"),
        ({"source": "MEDIA/clip.mp4", "detect_every": 0}, 422, "detect_every"),
        ({"source": "MEDIA/clip.mp4", "blur": True}, 422, "blur"),
        ({"source": "MEDIA/clip.mp4", "keep": ["Nobody Here"]}, 422, "keep: 'Nobody Here'"),
        ({"source": "MEDIA/clip.mp4", "keep": ["A"], "galleries": ["nope"]}, 422, "galleries:"),
    ],
)
def test_bad_input(server: Server, body: dict[str, object], status: int, says: str) -> None:
    media = str(server.data_dir / "media")
    body = {k: v.replace("MEDIA", media) if isinstance(v, str) else v for k, v in body.items()}
    with server.client("admin") as c:
        r = c.post("/api/redactions", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.text, r.text


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_only_supervisors_and_admins(server: Server, role: str) -> None:
    with server.client(role) as c:
        r = c.post("/api/redactions", json={"source": str(server.data_dir / "media" / "clip.mp4")})
        assert r.status_code == 403, r.text
        assert c.get("/api/redactions/0123456789abcdef").status_code == 403


def test_a_gallery_bound_key_is_refused(server: Server) -> None:
    with server.client("admin") as c:
        assert c.post("/api/galleries", json={"name": "bound", "kind": "reference"}).status_code == 201
    app = App(Settings(data_dir=server.data_dir))
    try:
        key = accounts.create_api_key(app, "bound-supervisor", Role.supervisor, gallery="bound").key
    finally:
        app.close()
    with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as c:
        r = c.post("/api/redactions", json={"source": str(server.data_dir / "media" / "clip.mp4")})
    assert r.status_code == 403, r.text
    assert "bound to one gallery" in r.json()["detail"]


def test_unknown_job_is_404(server: Server) -> None:
    with server.client("admin") as c:
        for path in ("/api/redactions/0123456789abcdef", "/api/redactions/nope/file"):
            r = c.get(path)
            assert r.status_code == 404, r.text
            assert "no redaction job" in r.json()["detail"]


def test_running_jobs_cannot_be_downloaded_and_are_limited(server: Server, shared_data: Path) -> None:
    """The whole clip, detecting on every frame: long enough to be running when asked (these jobs are
    left to the server's end)."""
    body = {"source": str(shared_data / "video" / "short_hamilton_clip.mp4")}
    with server.client("admin") as c:
        ids = []
        for _ in range(MAX_RUNNING):
            r = c.post("/api/redactions", json=body)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        r = c.post("/api/redactions", json=body)
        assert r.status_code == 429, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        r = c.get(f"/api/redactions/{ids[0]}/file")
        assert r.status_code == 409, r.text
        assert "still running" in r.json()["detail"]
