"""Which model pack a vigil process uses.

In order:

1. ``VIGIL_MODEL_PACK`` (``settings.model_pack``): evaluation and benchmarks;
2. ``custom`` when the legacy ``VIGIL_DETECTOR`` / ``VIGIL_EMBEDDER`` / ``VIGIL_ONNX_*`` settings are
   set (in the environment, a config file or by argument: pydantic-settings counts all of them as set);
   not recorded in the catalog;
3. the catalog's active pack (recorded by the switch job, ``vigil models use``);
4. first use: the best installed pack (edgeface-xs, edgeface-xxs, dlib). With only dlib installed and
   ``VIGIL_MODEL_DOWNLOAD`` on, edgeface-xs is downloaded (short connect timeout); offline vigil keeps
   dlib and logs, once, how to install the better pack. A catalog that already holds templates keeps
   the model that made them. The choice is recorded, so it is made once.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from vigil.core.config import PackName, Settings
from vigil.core.errors import VigilError
from vigil.storage.tables import Template
from vigil.vision.packs.active import PackContext, active_pack, record_initial_pack
from vigil.vision.packs.catalog import BEST_FIRST, PACKS, RECOMMENDED, get_pack
from vigil.vision.packs.store import read_manifest

log = logging.getLogger(__name__)

LEGACY_FIELDS = frozenset(
    {"detector", "embedder", "onnx_detector_path", "onnx_embedder_path", "onnx_embedder_card"}
)
FIRST_USE_ACTOR = "system:models"
FIRST_USE_CONNECT_TIMEOUT_S = 5.0


def uses_custom_models(settings: Settings) -> bool:
    """The user chose the detector or embedder with the legacy settings (environment included)."""
    return bool(LEGACY_FIELDS & settings.model_fields_set)


def is_installed(settings: Settings, name: str) -> bool:
    """dlib always; custom when the legacy settings name its models; a pack when its manifest is valid."""
    pack = get_pack(name)
    if pack.name == "dlib":
        return True
    if pack.name == "custom":
        return uses_custom_models(settings)
    return read_manifest(settings, name) is not None


def best_installed(settings: Settings) -> PackName:
    return next(name for name in BEST_FIRST if is_installed(settings, name))


def _record_initial(app: PackContext, pack: str) -> None:
    record_initial_pack(app, pack, _model_id(pack), FIRST_USE_ACTOR)


def _model_id(pack: str) -> str:
    card_id = PACKS[pack].card_id
    return card_id if card_id is not None else "custom"


# -- resolution -----------------------------------------------------------------------------------
def resolve_pack(app: PackContext, *, decide: bool = True) -> str:
    """The pack ``app`` uses (see the module's docstring).

    ``decide=False`` answers without first-use side effects (no download, nothing recorded): what
    ``vigil doctor`` and ``vigil models list`` show before the first use.
    """
    settings = app.settings
    if settings.model_pack is not None:
        return settings.model_pack
    if uses_custom_models(settings):
        return "custom"
    active = active_pack(app)
    if active is not None:
        return active
    if not decide:
        return _existing_model_pack(app) or best_installed(settings)
    choice = _first_use(app)
    _record_initial(app, choice)
    return choice


def _existing_model_pack(app: PackContext) -> PackName | None:
    """With templates in the catalog: the installed pack that made them, else dlib; None without any."""
    with app.db.session() as s:
        models = set(s.scalars(select(Template.model_id).distinct()))
    if not models:
        return None
    for name in BEST_FIRST:
        if PACKS[name].card_id in models and is_installed(app.settings, name):
            return name
    return "dlib"


def _first_use(app: PackContext) -> PackName:
    existing = _existing_model_pack(app)
    if existing is not None:
        return existing
    settings = app.settings
    choice = best_installed(settings)
    if choice != "dlib":
        return choice
    reason = "VIGIL_MODEL_DOWNLOAD is off"
    if settings.model_download or settings.model_source_dir is not None:  # a local folder is no download
        from vigil.vision.packs.service import install_pack

        try:
            install_pack(app, RECOMMENDED, FIRST_USE_ACTOR, connect_timeout_s=FIRST_USE_CONNECT_TIMEOUT_S)
            return RECOMMENDED
        except VigilError as exc:
            reason = f"the download failed: {exc.message}"
    log.warning(
        "vigil uses the dlib models (%s). For the more accurate %s pack run `vigil models install %s` "
        "(offline: `vigil models install %s --from DIR` with its files), then `vigil models use %s`.",
        reason,
        RECOMMENDED,
        RECOMMENDED,
        RECOMMENDED,
        RECOMMENDED,
    )
    return "dlib"
