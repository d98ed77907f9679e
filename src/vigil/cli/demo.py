"""`vigil demo`: enrol and identify on a public-domain photo that scikit-image ships."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from vigil.cli.common import JsonOpt, app, emit, handle_errors, out
from vigil.cli.faces import render_identify
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.storage.audit import cli_actor
from vigil.storage.tables import GalleryKind
from vigil.vision.image import png_image

DEMO_GALLERY = "demo"
DEMO_PERSON = "Eileen Collins"


class DemoResult(BaseModel):
    data_dir: str
    enrolment: enrolment.EnrolResult
    identify: matching.IdentifyResult
    verify: matching.VerifyResult


@handle_errors
def demo(as_json: bool = JsonOpt) -> None:
    """Enrol astronaut Eileen Collins from scikit-image's public-domain photo, then find her in a
    mirrored, smaller copy of it. Uses the default models and the embedded database."""
    from skimage import data

    a, me = app(), cli_actor()
    rgb: npt.NDArray[np.uint8] = data.astronaut()  # type: ignore[no-untyped-call]
    enrol_photo = png_image(rgb, "skimage:astronaut.png")
    probe_rgb = np.ascontiguousarray(rgb[::2, ::-2])  # mirrored, half size
    probe = png_image(probe_rgb, "skimage:astronaut-mirrored-half.png")

    if DEMO_GALLERY not in {g.name for g in galleries.list_galleries(a)}:
        galleries.create_gallery(
            a,
            galleries.validate_spec(name=DEMO_GALLERY, kind=GalleryKind.reference, purpose="vigil demo"),
            actor=me,
        )
    enrolled = enrolment.enroll(a, DEMO_GALLERY, DEMO_PERSON, [enrol_photo], actor=me)
    found = matching.identify(a, probe, [DEMO_GALLERY], actor=me)
    same = matching.verify(a, enrol_photo, probe, actor=me)
    result = DemoResult(data_dir=str(a.settings.data_dir), enrolment=enrolled, identify=found, verify=same)

    def render() -> None:
        out.print(f"[bold]vigil demo[/] (data in {result.data_dir})", markup=True)
        status = enrolled.photos[0].status
        out.print(
            f"1. enrol {DEMO_PERSON!r} into gallery {DEMO_GALLERY!r} "
            f"from scikit-image's astronaut photo: {status}"
        )
        out.print("2. identify the faces in a mirrored, half-size copy:")
        render_identify(found)
        out.print(
            f"3. verify original vs copy: same person = {same.same_person} "
            f"(score {same.score:.3f}, threshold {same.threshold:.3f} at FMR {same.fmr:g})"
        )
        out.print(
            "Next: `vigil gallery create`, `vigil enroll`, `vigil identify` with your own photos; "
            "`vigil watch VIDEO_OR_STREAM` for alarms on video; `vigil --help` for the rest."
        )

    emit(result, as_json, render)
