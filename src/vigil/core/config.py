"""Settings, loaded once (environment ``VIGIL_*``) and passed down.

Data directories are settings, never constants.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vigil.core.errors import ConfigError

DetectorName = Literal["hog", "mmod", "mmod-dlib", "yunet"]
EmbedderName = Literal["dlib-onnx", "dlib-resnet", "onnx"]
PackName = Literal["dlib", "edgeface-xs", "edgeface-xxs", "custom"]
"""The model packs vigil knows (``vigil.vision.packs``); ``custom`` is the user's own ONNX files."""


def _default_data_dir() -> Path:
    return Path(user_data_dir("vigil", appauthor=False))


class Settings(BaseSettings):
    """vigil settings. Every field can be set as ``VIGIL_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="forbid")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite (WAL) in the data directory"
    )
    vector_url: str | None = Field(
        default=None,
        description="Milvus for the galleries' vectors: http://host:19530 (a server or cluster) or a "
        "local .db file (Milvus Lite); default: FAISS index files in the data directory",
    )
    vector_token: SecretStr | None = Field(default=None, description="Milvus user:password or API key")
    vector_prefix: str = Field(
        default="vigil",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,30}$",
        description="prefix of this deployment's Milvus collections (several deployments may share one)",
    )
    vector_index: Literal["FLAT", "IVF_FLAT", "HNSW"] = Field(
        default="FLAT", description="the Milvus collections' index (FLAT: exact search)"
    )
    detector: DetectorName = "hog"
    embedder: EmbedderName = Field(
        default="dlib-onnx",
        description="dlib-onnx: dlib's ResNet converted to ONNX (fast, batched); dlib-resnet: the same model "
        "run by dlib (the reference); onnx: an ArcFace-style model file you install",
    )
    onnx_detector_path: Path | None = None
    onnx_embedder_path: Path | None = None
    onnx_embedder_card: Path | None = Field(
        default=None, description="model card JSON for the ONNX embedder; default: beside the model file"
    )
    model_pack: PackName | None = Field(
        default=None,
        description="pack to use in place of the catalog's active one, for evaluation and benchmarks; "
        "a deployment switches with `vigil models use`",
    )
    model_download: bool = Field(
        default=True,
        description="on first use, with only the dlib pack installed, download the edgeface-xs pack "
        "(false: never try the network on its own)",
    )
    model_source_dir: Path | None = Field(
        default=None,
        description="a local folder holding the model packs' upstream files by name: `vigil models "
        "install` takes them from here instead of downloading",
    )
    model_mirror_url: str | None = Field(
        default=None,
        description="base URL of a site mirror holding the model packs' files by name "
        "(<url>/<file name>), used instead of the upstream URLs",
    )
    model_download_timeout_s: float = Field(
        default=60.0, gt=0, description="a model download gives up when no data arrives for this long"
    )
    dlib_landmarks: Literal["auto", "68", "5"] = Field(
        default="auto",
        description="landmarks that align faces for the dlib embedder: auto = 68 points on HOG boxes "
        "(most accurate), 5 points otherwise; see docs/models.md for the 68-point model's licence note",
    )
    detect_max_side_px: int = Field(default=1600, ge=160, description="images are scaled down to this")
    detect_upsample_below_px: int = Field(
        default=800, ge=0, description="images whose long side is below this are upsampled once"
    )
    detect_min_confidence: float = Field(
        default=0.8, ge=0, le=1, description="detections below this confidence are dropped"
    )
    index_approximate_above: int = Field(
        default=100_000,
        ge=1,
        description="a gallery index with more templates than this is searched approximately (IVF lists, "
        "exact scores for what is found; docs/performance.md, Search at scale)",
    )
    index_compressed_above: int = Field(
        default=2_000_000,
        ge=1,
        description="past this many templates the index keeps 8-bit codes in memory and re-scores the best "
        "candidates from a memory-mapped float32 file (in memory when index files are encrypted)",
    )
    index_recheck_margin: float = Field(
        default=0.05,
        ge=0,
        le=2,
        description="an approximate search whose best score comes within this of the decision threshold "
        "is searched again exhaustively, so decisions are those of exact search",
    )
    index_nprobe: int = Field(
        default=48,
        ge=1,
        le=65_536,
        description="inverted lists an approximate search visits (recall vs speed)",
    )
    max_image_pixels: int = Field(default=50_000_000, ge=1, description="decompression-bomb guard")
    max_upload_bytes: int = Field(default=30_000_000, ge=1)
    max_image_memory_bytes: int = Field(
        default=256 * 2**20, ge=1, description="decompression-bomb guard: memory to decode one image"
    )
    target_fmr: float = Field(default=1e-3, gt=0, lt=1, description="1:1 verification false-match rate")
    target_fpir: float = Field(default=1e-2, gt=0, lt=1, description="1:N false-positive identification rate")
    threads: int = Field(default=0, ge=0, description="threads for model runtimes; 0 = all cores")
    timezone: str | None = Field(
        default=None,
        description="IANA time zone of attendance schedules and reports, e.g. Europe/Paris "
        "(marks are stored in UTC); default: the machine's local zone",
    )

    # Video (the per-camera pipeline)
    video_detect_every: int = Field(default=3, ge=1, description="run the detector on every Nth frame")
    video_full_frame_every: int = Field(
        default=2,
        ge=1,
        description="every Nth detection scans the whole frame; the ones between scan only around the "
        "faces being tracked (1: every detection scans the whole frame)",
    )
    video_detect_threads: int = Field(
        default=0,
        ge=0,
        le=4,
        description="detector runs in flight at once: frames are detected ahead on this many threads "
        "while earlier frames are tracked and matched (1: detection inside the frame loop; 0: one per "
        "usable core; at most 4)",
    )
    video_detect_side_px: int = Field(
        default=960,
        ge=160,
        description="frames are scaled (up or down) to this long side for detection; 960 finds faces of "
        "about 50 px in a 640x360 frame",
    )
    video_detect_gray: bool = Field(
        default=True, description="the HOG detector scans grey frames (about 20 % faster than colour)"
    )
    video_detect_upsample: bool = Field(
        default=False, description="also upsample 2x inside the detector (very small faces; ~4x slower)"
    )
    video_min_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="weaker detections are ignored; below video_track_confidence they only extend tracks",
    )
    video_track_confidence: float = Field(
        default=0.8, ge=0, le=1, description="detections that may start a track"
    )
    video_max_lost_s: float = Field(default=1.0, gt=0, description="a track unseen this long ends")
    video_embeds_per_track: int = Field(default=3, ge=1, description="best shots embedded per track, at most")
    video_min_quality: float = Field(
        default=0.3, ge=0, le=1, description="a shot is embedded once its quality reaches this"
    )
    video_improve_by: float = Field(
        default=0.08,
        ge=0,
        le=1,
        description="a later shot is embedded when its quality beats the last by this",
    )
    stranger_min_quality: float = Field(
        default=0.85,
        ge=0,
        le=1,
        description="a face below this quality is never a stranger (camera stranger rules; blurred and "
        "small faces score lower, see bench/stranger_quality.py)",
    )
    stranger_shots: int = Field(
        default=2,
        ge=1,
        description="a track is a stranger after this many good shots that matched nobody (or at its end)",
    )
    stranger_retention_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        description="stranger alarms (and their crops) are deleted this many days after capture, "
        "unless their camera sets its own retention_days",
    )

    # Server (`vigil serve`)
    host: str = Field(default="127.0.0.1", description="address `vigil serve` listens on")
    port: int = Field(default=8080, ge=1, le=65535)
    session_hours: float = Field(default=12.0, gt=0, description="browser sessions last this long")
    secure_cookies: bool = Field(
        default=False, description="mark session cookies Secure (set when served over HTTPS)"
    )
    start_cameras: bool = Field(default=True, description="`vigil serve` starts every enabled camera")
    login_free_failures: int = Field(
        default=5, ge=1, description="failed log-ins to one account before its attempts are throttled"
    )
    login_client_free_failures: int = Field(
        default=20, ge=1, description="failed log-ins from one client (IP) before its attempts are throttled"
    )
    login_backoff_s: float = Field(
        default=1.0, gt=0, description="first wait once throttled; doubles with every further failure"
    )
    login_max_backoff_s: float = Field(default=900.0, gt=0, description="the longest wait between attempts")
    login_forget_s: float = Field(
        default=3600.0, gt=0, description="failed log-ins are forgotten after this long without another"
    )
    login_unknown_audit_s: float = Field(
        default=3600.0,
        gt=0,
        description="failed log-ins for unknown user names: one audit entry, with their count, this often",
    )
    worker_max_backoff_s: float = Field(
        default=60.0, gt=0, description="a dead camera worker is restarted after 1, 2, 4 ... up to this"
    )
    worker_max_failures: int = Field(
        default=5,
        ge=1,
        description="a camera whose worker fails this many times in a row (without a minute of stable "
        "running) is marked failed and no longer restarted",
    )
    media_dirs: list[Path] | None = Field(
        default=None,
        description="folders that file and image-folder cameras may read from, a JSON list such as "
        '["/srv/video"] (default: <data dir>/media)',
    )
    preview_fps: float = Field(default=5.0, gt=0, le=30, description="live preview frames per second")
    mqtt_url: str | None = Field(
        default=None, description="MQTT broker for notifications, e.g. mqtt://localhost:1883 (none: off)"
    )
    mqtt_topic_prefix: str = Field(
        default="vigil", description="topics: <prefix>/alarms, <prefix>/<camera>/..."
    )
    nats_url: str | None = Field(
        default=None,
        description="NATS server (JetStream) between edge devices and servers, e.g. nats://127.0.0.1:4222; "
        "turns the fleet transport on (server: consume device events; worker: send them). None: one box",
    )
    nats_stream: str = Field(
        default="VIGIL_EVENTS", description="the JetStream stream device events travel on"
    )
    outbox_max_mb: float = Field(
        default=2048.0,
        gt=0,
        description="worker: the on-disk outbox's size cap; when full, the oldest events that are not "
        "alarms are dropped first, then the oldest alarms (counted in vigil_outbox_dropped_total)",
    )
    fleet_poll_s: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="worker: how often it asks the server for its cameras and watchlists",
    )
    fleet_heartbeat_s: float = Field(
        default=5.0, gt=0, le=300, description="worker: how often it reports its status to the server"
    )
    device_offline_s: float = Field(
        default=30.0, gt=0, description="a device not heard from for this long is shown offline"
    )
    video_watchlist_refresh_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds between a running camera's look-ups of the active watchlists (a worker "
        "looks up again at once when its server changes them)",
    )
    webhook_attempts: int = Field(default=5, ge=1, description="tries before a webhook goes to dead letters")
    webhook_backoff_s: float = Field(default=1.0, gt=0, description="first retry delay; doubles each time")
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    encryption_key: SecretStr | None = Field(
        default=None,
        description="a Fernet key: photos, crops, templates and index files are encrypted at rest "
        "(`vigil encryption new-key`); losing it loses them",
    )
    purge_interval_s: float = Field(
        default=3600.0, gt=0, description="`vigil serve` deletes what is past its retention this often"
    )
    cluster_interval_s: float = Field(
        default=3600.0,
        ge=0,
        description="`vigil serve` clusters new unmatched sightings into recurring unknown people this "
        "often (0: only when asked, `vigil clusters update` or the API)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then ``VIGIL_*`` variables, then the TOML file ``VIGIL_CONFIG`` names (if any)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("VIGIL_CONFIG")
        if config:
            path = Path(config).expanduser()
            if not path.is_file():
                raise ConfigError(f"VIGIL_CONFIG names {path}, which is not a file", hint="fix or unset it")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'vigil.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def models_dir(self) -> Path:
        """Converted model graphs (made once from the installed model files)."""
        return self.data_dir / "models"

    @property
    def cards_dir(self) -> Path:
        return self.data_dir / "cards"

    @property
    def media_folders(self) -> list[Path]:
        """The folders camera files may lie in (``media_dirs``, default ``<data dir>/media``), resolved."""
        return [p.expanduser().resolve() for p in (self.media_dirs or [self.data_dir / "media"])]

    @property
    def cameras_dir(self) -> Path:
        """Per-camera worker state: a file camera's position, the worker's lock."""
        return self.data_dir / "cameras"
