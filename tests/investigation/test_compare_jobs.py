"""Comparison jobs survive a restart (issue 15, item 5): a job stopped mid-way, or a server killed with
-9 mid-comparison, goes on from its checkpoint and gives the result an uninterrupted run gives, audited
once; an identity erased since drops out of the stored result; `vigil compare --resume` goes on from
the command line.

The templates are synthetic unit vectors of the engine's dimension, inserted straight into the catalog
(the search and the threshold are the real ones; real faces are compared in test_compare.py): gallery
B holds noisy copies of the first ``PLANTED`` templates of A, so exactly those pairs are expected.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select, update
from typer.testing import CliRunner

from vigil.app import App
from vigil.cli import cli
from vigil.core.config import Settings
from vigil.core.errors import ConflictError, NotFoundError
from vigil.gallery import galleries, identities
from vigil.investigation import compare
from vigil.investigation import compare_jobs as jobs
from vigil.storage import audit
from vigil.storage.tables import Gallery, GalleryKind, Identity, Template

sys.path.append(str(Path(__file__).resolve().parents[1] / "server"))  # harness.py
from harness import start_server, stop_server, wait_for

pytestmark = pytest.mark.catalogs

PLANTED = 25


def _insert(app: App, gallery: str, vectors: np.ndarray, prefix: str) -> None:
    with app.db.session() as s:
        gid = s.scalar(select(Gallery.id).where(Gallery.name == gallery))
        first = (s.scalar(select(Identity.id).order_by(Identity.id.desc()).limit(1)) or 0) + 1
        first_t = (s.scalar(select(Template.id).order_by(Template.id.desc()).limit(1)) or 0) + 1
        s.execute(
            insert(Identity),
            [{"id": first + i, "gallery_id": gid, "name": f"{prefix}-{i:05d}"} for i in range(len(vectors))],
        )
        s.execute(
            insert(Template),
            [
                {
                    "id": first_t + i,
                    "identity_id": first + i,
                    "model_id": app.engine.card.id,
                    "dimension": vectors.shape[1],
                    "vector": v.astype("<f4").tobytes(),
                    "quality": 1.0,
                    "source_sha256": f"{prefix}-{i:060d}"[:64],
                }
                for i, v in enumerate(vectors)
            ],
        )
        s.execute(update(Gallery).where(Gallery.id == gid).values(generation=Gallery.generation + 1))


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def fill(app: App, n_a: int, n_b: int) -> None:
    """Gallery ``wanted`` (n_a) and ``enrolled`` (n_b): noisy copies of A's first PLANTED, then others."""
    rng = np.random.default_rng(5)
    d = app.engine.card.dimension
    a = _unit(rng.standard_normal((n_a, d)))
    b = _unit(
        np.vstack([a[:PLANTED] + 0.01 * rng.standard_normal((PLANTED, d)), rng.standard_normal((n_b, d))])
    )
    for name in ("wanted", "enrolled"):
        galleries.create_gallery(app, galleries.GallerySpec(name=name, kind=GalleryKind.reference))
    _insert(app, "wanted", a, "a")
    _insert(app, "enrolled", b, "b")


def _request(batch_size: int) -> compare.CompareRequest:
    return compare.CompareRequest(
        gallery_a="wanted", gallery_b="enrolled", case="case 15", batch_size=batch_size
    )


def _pairs(result: compare.CompareResult) -> list[tuple[str, str, float]]:
    """The identity pairs, scores to 4 decimals (a batch of 1 and one of 4,096 round differently)."""
    return [(p.identity_a, p.identity_b, round(p.score, 4)) for p in result.identities]


@pytest.fixture
def filled(app: App) -> App:
    fill(app, 2000, 2000)
    return app


def test_a_stopped_job_goes_on_from_its_checkpoint_with_the_same_result(filled: App) -> None:
    whole = compare.compare_galleries(filled, _request(100), actor="test")
    assert len(whole.identities) == PLANTED
    job = jobs.create_job(filled, compare.plan_comparison(filled, _request(100)), "user:alice")

    def stop_at_700(done: int, total: int) -> None:
        if done >= 700:
            raise jobs.JobStoppedError

    with pytest.raises(jobs.JobStoppedError):
        jobs.run_job(filled, job.id, progress=stop_at_700)
    stopped = jobs.job_info(filled, job.id)
    assert stopped.state == "interrupted" and stopped.done == 700 and stopped.total == 2000
    assert stopped.identity_pairs == PLANTED  # the planted pairs are among A's first templates
    assert jobs.pending_jobs(filled) == [job.id] and jobs.job_result(filled, job.id) is None
    seen: list[int] = []
    resumed = jobs.run_job(filled, job.id, progress=lambda done, total: seen.append(done))
    assert seen[0] == 700 and seen[-1] == 2000 and seen == sorted(seen)
    assert _pairs(resumed) == _pairs(whole)
    done = jobs.job_info(filled, job.id)
    assert done.state == "done" and done.runs == 2 and done.done == 2000 and jobs.pending_jobs(filled) == []
    stored = jobs.job_result(filled, job.id)
    assert stored is not None and _pairs(stored) == _pairs(whole)
    entries = [e for e in audit.entries(filled, action="compare") if e.detail.get("job") == job.id]
    assert len(entries) == 1 and entries[0].detail["runs"] == 2 and entries[0].actor == "user:alice"
    with pytest.raises(ConflictError, match="already done"):
        jobs.run_job(filled, job.id)  # a finished job is not run twice


def test_an_identity_erased_since_drops_out_of_the_stored_result(filled: App) -> None:
    job = jobs.create_job(filled, compare.plan_comparison(filled, _request(500)), "test")
    result = jobs.run_job(filled, job.id)
    gone = result.identities[0].identity_a
    identities.remove_identity(filled, "wanted", gone, actor="test")
    stored = jobs.job_result(filled, job.id)
    assert stored is not None and len(stored.identities) == PLANTED - 1
    assert gone not in {p.identity_a for p in stored.identities} | {p.identity_a for p in stored.pairs}


def test_unknown_jobs_and_a_gallery_deleted_before_the_resume(filled: App) -> None:
    with pytest.raises(NotFoundError):
        jobs.job_info(filled, "nope")
    job = jobs.create_job(filled, compare.plan_comparison(filled, _request(100)), "test")
    galleries.delete_gallery(filled, "enrolled", actor="test")
    with pytest.raises(NotFoundError):
        jobs.run_job(filled, job.id)
    failed = jobs.job_info(filled, job.id)
    assert failed.state == "failed" and "enrolled" in (failed.error or "")
    assert jobs.pending_jobs(filled) == []


def test_cli_resumes_a_job(filled: App, tmp_path: Path) -> None:
    job = jobs.create_job(filled, compare.plan_comparison(filled, _request(100)), "cli:test")
    with pytest.raises(jobs.JobStoppedError):
        jobs.run_job(filled, job.id, progress=lambda done, total: (_ for _ in ()).throw(jobs.JobStoppedError))
    env = {"VIGIL_DATA_DIR": str(filled.settings.data_dir)}
    if filled.settings.database_url:
        env["VIGIL_DATABASE_URL"] = filled.settings.database_url
    listed = CliRunner().invoke(cli, ["compare", "--list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [(j["id"], j["state"]) for j in json.loads(listed.output)] == [(job.id, "interrupted")]
    ran = CliRunner().invoke(cli, ["compare", "--resume", job.id, "--json"], env=env)
    assert ran.exit_code == 0, ran.output
    assert jobs.job_info(filled, job.id).state == "done"
    again = CliRunner().invoke(cli, ["compare", "--resume", job.id], env=env)
    assert again.exit_code != 0 and "already done" in again.output
    bare = CliRunner().invoke(cli, ["compare"], env=env)
    assert bare.exit_code != 0 and "name the two galleries" in bare.output


@pytest.mark.slow
def test_a_server_killed_mid_comparison_goes_on_when_it_starts_again(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "server"
    app = App(Settings(data_dir=data_dir), engine_override=engine)
    fill(app, 12_000, 2000)
    expected = _pairs(compare.compare_galleries(app, _request(4096), actor="test"))
    app.close()
    server = start_server(data_dir, env={"VIGIL_START_CAMERAS": "false"})
    body = {"gallery_a": "wanted", "gallery_b": "enrolled", "case": "case 15", "batch_size": 1}
    try:
        with server.client("supervisor") as c:
            job = c.post("/api/compare", json=body).json()
            mid = wait_for(lambda: (j := c.get(f"/api/compare/{job['id']}").json())["done"] > 0 and j)
        assert mid["state"] == "running" and mid["done"] < 12_000, mid
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        server = start_server(data_dir, env={"VIGIL_START_CAMERAS": "false"}, keys=server.keys)
        with server.client("supervisor") as c:
            final = wait_for(
                lambda: (j := c.get(f"/api/compare/{job['id']}").json())["state"] == "done" and j,
                timeout_s=180,
            )
            assert final["runs"] == 2 and final["done"] == final["total"] == 12_000
            got = [
                (p["identity_a"], p["identity_b"], round(p["score"], 4))
                for p in final["result"]["identities"]
            ]
            assert got == expected
            listed = c.get("/api/compare").json()
            assert [j["id"] for j in listed] == [job["id"]] and listed[0]["state"] == "done"
        with server.client("admin") as c:
            entries = [
                e for e in c.get("/api/audit", params={"action": "compare"}).json() if e["detail"].get("job")
            ]
        assert len(entries) == 1 and entries[0]["detail"]["runs"] == 2
    finally:
        stop_server(server)
