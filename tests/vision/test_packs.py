"""Model packs: installing from a folder and over HTTP, refusing tampered files, removing, resolving which
pack is used, and the engine of a pack. Real files from ``../shared/models``; the only network is a
local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import importlib.util
import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConfigError, ConflictError, ModelError, NotFoundError
from vigil.gallery.enroll import enroll
from vigil.gallery.galleries import create_gallery, validate_spec
from vigil.governance import report
from vigil.storage import audit
from vigil.storage.tables import GalleryKind
from vigil.vision.engine import FaceEngine, build_engine
from vigil.vision.image import load_image
from vigil.vision.packs import resolve, store
from vigil.vision.packs.active import active_pack, record_initial_pack
from vigil.vision.packs.catalog import PACKS, get_pack
from vigil.vision.packs.service import install_pack, list_packs, remove_pack

ACTOR = "cli:test"
HAS_CONVERTER = importlib.util.find_spec("vigil.vision.edgeface.convert") is not None
needs_converter = pytest.mark.skipif(
    not HAS_CONVERTER, reason="the EdgeFace converter (vigil.vision.edgeface.convert) has not landed yet"
)


class _QuietHandler(SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format: str, *args: object) -> None:
        type(self).requested.append(self.path)


@contextmanager
def _serve(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """``(base URL, requested paths)`` of an HTTP server on 127.0.0.1 serving ``folder``."""
    handler = type("Handler", (_QuietHandler,), {"requested": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler.requested
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror(shared_models: Path) -> Iterator[tuple[str, list[str]]]:
    with _serve(shared_models) as served:
        yield served


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[App]:
    """An application context without an engine override: it resolves its pack like a real one."""
    a = App(Settings(data_dir=tmp_path / "data"))
    yield a
    a.close()


def _tampered(shared_models: Path, tmp_path: Path, name: str, *, append: bytes = b"") -> Path:
    folder = tmp_path / "usb"
    folder.mkdir()
    for f in get_pack("edgeface-xs").files:
        shutil.copy(shared_models / f.name, folder / f.name)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data) + append)
    return folder


def _nothing_installed(settings: Settings) -> None:
    root = store.packs_dir(settings)
    assert not root.exists() or list(root.iterdir()) == []  # no pack, no staging folder left
    assert not resolve.is_installed(settings, "edgeface-xs")


# -- fetching and verifying (no converter needed) ------------------------------------------------
def test_files_are_downloaded_from_a_mirror_and_checked(
    mirror: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, requested = mirror
    pack = get_pack("edgeface-xs")
    seen: list[tuple[int, int]] = []
    store.fetch_files(
        pack, tmp_path, store.FileSource(mirror_url=url), progress=lambda d, t: seen.append((d, t))
    )
    assert sorted(requested) == sorted(f"/{f.name}" for f in pack.files)
    for f in pack.files:
        assert store.sha256_file(tmp_path / f.name) == f.sha256
    assert seen[-1] == (pack.size_bytes, pack.size_bytes)


@pytest.mark.parametrize(
    ("name", "append", "error"),
    [
        ("edgeface_xs_q.pt", b"", "has SHA-256 .* refused, nothing installed"),
        ("yunet_n_dynamic.onnx", b"", "has SHA-256 .* refused, nothing installed"),
        ("yunet_n_dynamic.onnx", b"x", "larger than the pinned 322,906 bytes"),
    ],
)
def test_a_tampered_file_is_refused_and_nothing_is_left(
    fresh: App, shared_models: Path, tmp_path: Path, name: str, append: bytes, error: str
) -> None:
    folder = _tampered(shared_models, tmp_path, name, append=append)
    with pytest.raises(ModelError, match=error):
        install_pack(fresh, "edgeface-xs", ACTOR, from_dir=folder)
    _nothing_installed(fresh.settings)
    assert [e for e in audit.entries(fresh) if e.action == "model_install"] == []


def test_an_oversized_download_is_refused(shared_models: Path, tmp_path: Path) -> None:
    folder = _tampered(shared_models, tmp_path, "edgeface_xs_q.pt", append=b"\0" * 100_000)
    dest = tmp_path / "dest"
    dest.mkdir()
    with _serve(folder) as (url, _), pytest.raises(ModelError, match=r"offers 3,093,451 bytes .* refused"):
        store.fetch_files(get_pack("edgeface-xs"), dest, store.FileSource(mirror_url=url))


def test_a_missing_file_and_an_unreachable_mirror_are_clear_errors(fresh: App, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"edgeface_xs_q\.pt is not in .*sha256 a3131437"):
        install_pack(fresh, "edgeface-xs", ACTOR, from_dir=tmp_path)
    with pytest.raises(NotFoundError, match="is not a folder"):
        install_pack(fresh, "edgeface-xs", ACTOR, from_dir=tmp_path / "nope")
    offline = App(fresh.settings.model_copy(update={"model_mirror_url": "http://127.0.0.1:9/"}))
    with pytest.raises(ModelError, match=r"could not download edgeface_xs_q\.pt") as exc:
        install_pack(offline, "edgeface-xs", ACTOR, connect_timeout_s=2)
    offline.close()
    assert "--from DIR" in (exc.value.hint or "")
    _nothing_installed(fresh.settings)


def _embedding(engine: FaceEngine, path: Path) -> npt.NDArray[np.float32]:
    """The largest face's (512,) unit vector."""
    embedding = engine.analyze(load_image(path).bgr)[0].embedding
    assert embedding is not None and embedding.shape == (1, 512)
    assert np.isclose(np.linalg.norm(embedding), 1.0, atol=1e-5)
    return embedding[0]


# -- install, engine, remove (need the converter) -----------------------------------------------
@needs_converter
def test_install_from_a_folder_then_the_engine_embeds_a_real_face(
    fresh: App, shared_models: Path, people: Path
) -> None:
    status = install_pack(fresh, "edgeface-xs", ACTOR, from_dir=shared_models)
    assert status.installed and status.path is not None
    manifest = store.read_manifest(fresh.settings, "edgeface-xs")
    assert (
        manifest is not None
        and manifest.files["edgeface_xs_q.pt"].sha256 == PACKS["edgeface-xs"].file("embedder").sha256
    )
    (entry,) = [e for e in audit.entries(fresh) if e.action == "model_install"]
    assert entry.target_name == "edgeface-xs" and entry.actor == ACTOR

    engine = build_engine(fresh.settings, "edgeface-xs")
    assert engine.model_id == "edgeface-xs-q" and engine.card.dimension == 512
    a, b, other = (_embedding(engine, people / f) for f in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    same, diff = float(a @ b), float(a @ other)
    assert same > diff + 0.2, (same, diff)

    # a second install is a no-op; remove deletes the folder and is audited
    install_pack(fresh, "edgeface-xs", ACTOR, from_dir=shared_models)
    assert len([e for e in audit.entries(fresh) if e.action == "model_install"]) == 1
    assert not remove_pack(fresh, "edgeface-xs", ACTOR).installed
    assert not store.pack_dir(fresh.settings, "edgeface-xs").exists()
    assert [e.target_name for e in audit.entries(fresh) if e.action == "model_remove"] == ["edgeface-xs"]


@needs_converter
def test_install_over_http_from_the_mirror_setting(
    mirror: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requested = mirror
    monkeypatch.setenv("VIGIL_MODEL_MIRROR_URL", url)
    monkeypatch.setenv("VIGIL_MODEL_DOWNLOAD", "true")
    a = App(Settings(data_dir=tmp_path / "data"))
    try:
        assert install_pack(a, "edgeface-xxs", ACTOR).installed
        assert sorted(requested) == ["/edgeface_xxs_q.pt", "/yunet_n_dynamic.onnx"]
        assert build_engine(a.settings, "edgeface-xxs").model_id == "edgeface-xxs-q"
    finally:
        a.close()
    # first use on a fresh data directory, download allowed: edgeface-xs is fetched and chosen
    requested.clear()
    b = App(Settings(data_dir=tmp_path / "fresh"))
    try:
        assert b.pack == "edgeface-xs" and b.engine.model_id == "edgeface-xs-q"
        assert "/edgeface_xs_q.pt" in requested
        assert active_pack(b) == "edgeface-xs"
    finally:
        b.close()


def test_a_pack_that_is_not_installed_is_a_config_error_with_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not installed") as exc:
        build_engine(Settings(data_dir=tmp_path), "edgeface-xs")
    assert "vigil models install edgeface-xs" in (exc.value.hint or "")


def test_the_dlib_pack_is_the_default_engine(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    dlib = build_engine(Settings(data_dir=tmp_path), "dlib")
    assert (dlib.detector.name, dlib.model_id) == (engine.detector.name, engine.model_id)


@pytest.mark.parametrize(
    ("name", "setting", "error", "message"),
    [
        ("dlib", {}, ConflictError, "cannot be removed"),
        ("custom", {}, ConflictError, "cannot be removed"),
        ("edgeface-xs", {"model_pack": "edgeface-xs"}, ConflictError, "VIGIL_MODEL_PACK names edgeface-xs"),
        ("edgeface-xs", {}, NotFoundError, "is not installed"),
        ("nope", {}, NotFoundError, "there is no model pack 'nope'"),
    ],
)
def test_remove_refuses(
    tmp_path: Path, name: str, setting: dict[str, str], error: type[Exception], message: str
) -> None:
    a = App(Settings(data_dir=tmp_path / "data", **setting))  # type: ignore[arg-type]
    try:
        with pytest.raises(error, match=message):
            remove_pack(a, name, ACTOR)
    finally:
        a.close()


def test_remove_refuses_the_active_pack(fresh: App) -> None:
    record_initial_pack(fresh, "edgeface-xs", "edgeface-xs-q", ACTOR)
    with pytest.raises(ConflictError, match="edgeface-xs is the active model pack") as exc:
        remove_pack(fresh, "edgeface-xs", ACTOR)
    assert "vigil models use" in (exc.value.hint or "")


# -- which pack is used -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VIGIL_MODEL_PACK": "edgeface-xxs"}, "edgeface-xxs"),
        ({"VIGIL_MODEL_PACK": "dlib", "VIGIL_DETECTOR": "yunet"}, "dlib"),
        ({"VIGIL_DETECTOR": "hog"}, "custom"),  # set explicitly, even to the default value
        ({"VIGIL_EMBEDDER": "onnx"}, "custom"),
        ({"VIGIL_ONNX_EMBEDDER_PATH": "/x.onnx"}, "custom"),
    ],
)
def test_the_pack_setting_then_the_legacy_settings_decide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    a = App(Settings(data_dir=tmp_path / "data"))
    try:
        assert a.pack == expected
        assert not (a.settings.data_dir / "vigil.db").exists()  # decided without the catalog
    finally:
        a.close()


def test_first_use_offline_keeps_dlib_and_says_how_to_install_the_better_pack(
    fresh: App, caplog: pytest.LogCaptureFixture
) -> None:
    assert fresh.settings.model_download is False  # tests/conftest.py: never the network by accident
    with caplog.at_level(logging.WARNING, logger="vigil.vision.packs.resolve"):
        assert fresh.pack == "dlib"
        assert fresh.engine.model_id == "dlib-resnet-v1"
    (hint,) = [r.getMessage() for r in caplog.records]
    assert "vigil models install edgeface-xs" in hint and "--from DIR" in hint
    assert [p.name for p in list_packs(fresh) if p.in_use] == ["dlib"]
    fresh.reload_engine()
    assert "pack" not in fresh.__dict__ and "engine" not in fresh.__dict__


def test_the_first_use_choice_is_recorded_and_the_hint_not_repeated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="vigil.vision.packs.resolve"):
        for _ in range(2):
            a = App(settings)
            assert a.pack == "dlib"
            a.close()
    assert len(caplog.records) == 1
    a = App(settings)
    assert active_pack(a) == "dlib"
    a.close()


@needs_converter
def test_first_use_picks_the_best_installed_pack_unless_templates_exist(
    fresh: App,
    shared_models: Path,
    people: Path,
    engine,  # type: ignore[no-untyped-def]
) -> None:
    install_pack(fresh, "edgeface-xs", ACTOR, from_dir=shared_models)
    assert resolve.resolve_pack(fresh, decide=False) == "edgeface-xs"
    # an existing install (templates of the dlib model in the catalog) keeps its model
    dlib_app = App(fresh.settings, engine_override=engine)
    try:
        create_gallery(dlib_app, validate_spec(name="staff", kind=GalleryKind.reference))
        enroll(dlib_app, "staff", "Barack Obama", [load_image(people / "obama.jpg")])
    finally:
        dlib_app.close()
    assert resolve.resolve_pack(fresh, decide=False) == "dlib"


def test_the_transparency_report_lists_the_models_with_licences_and_caveats(tmp_path: Path) -> None:
    a = App(Settings(data_dir=tmp_path / "data", model_pack="edgeface-xs"))
    try:
        r = report.build(a)
        (model,) = r.models
        assert (model.pack, model.model_id, model.current) == ("edgeface-xs", "edgeface-xs-q", True)
        assert "BSD-3-Clause (EdgeFace)" in model.licences and "WebFace12M" in (model.caveat or "")
        page = report.to_html(r)
        assert "Face models" in page and "WebFace12M" in page
    finally:
        a.close()
