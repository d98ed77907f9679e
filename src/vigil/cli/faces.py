"""`vigil enroll`, `enroll-dir`, `verify`, `identify` and the `demo`."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, err, out, progress_bar
from vigil.core.errors import ForbiddenError, InputError
from vigil.core.refusals import check_metadata
from vigil.gallery import enroll as enrolment
from vigil.gallery import matching
from vigil.gallery.matching import IdentifyResult
from vigil.storage.audit import cli_actor
from vigil.vision.image import IMAGE_SUFFIXES, LoadedImage, load_image


def _load(path: Path) -> LoadedImage:
    s = app().settings
    return load_image(
        path,
        max_pixels=s.max_image_pixels,
        max_bytes=s.max_upload_bytes,
        max_memory_bytes=s.max_image_memory_bytes,
    )


def parse_meta(items: list[str] | None) -> dict[str, str] | None:
    """``--meta KEY=VALUE`` options as a dict; keys naming sensitive traits are refused."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--meta {item!r} is not KEY=VALUE", hint="e.g. --meta employee_no=4711")
        out[key.strip()] = value.strip()
    check_metadata(out, "--meta")
    return out


def enroll(
    name: Annotated[str, typer.Argument(help="the person's name")],
    images: Annotated[list[Path], typer.Argument(help="one or more photos of the person")],
    gallery: Annotated[str, typer.Option("--gallery", "-g", help="gallery to enrol into")],
    largest: Annotated[
        bool, typer.Option("--largest", help="take the largest face when a photo has several")
    ] = False,
    external_id: Annotated[str | None, typer.Option("--external-id")] = None,
    notes: Annotated[str | None, typer.Option("--notes")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="operator metadata KEY=VALUE (repeatable)")
    ] = None,
    consent_on: Annotated[
        str | None,
        typer.Option("--consent-on", help="attendance galleries: the day the person consented, YYYY-MM-DD"),
    ] = None,
    consent_by: Annotated[
        str | None, typer.Option("--consent-by", help="attendance galleries: who recorded the consent")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Enrol a person from photos (one transaction: every photo or none). Attendance galleries need
    the person's consent (--consent-on, --consent-by)."""
    attributes = parse_meta(meta)
    consent_day = _consent_day(consent_on)
    enrolment.check_consent(app(), gallery, name, consent_day, consent_by)
    result = enrolment.enroll(
        app(),
        gallery,
        name,
        [_load(p) for p in images],
        largest=largest,
        external_id=external_id,
        notes=notes,
        attributes=attributes,
        consent_on=consent_day,
        consent_by=consent_by,
        actor=cli_actor(),
    )

    def render() -> None:
        verb = "enrolled new identity" if result.created else "updated"
        out.print(f"{verb} {result.identity!r} in {result.gallery!r}")
        for p in result.photos:
            out.print(f"  {p.status:>16}  quality {p.quality:.2f}  {p.name}")
        for w in result.warnings:
            out.print(f"  warning: {w}", markup=False)

    emit(result, as_json, render)


def _consent_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"--consent-on {value!r} is not a date", hint="use YYYY-MM-DD") from exc


class EnrolDirPerson(enrolment.PersonOutcome):
    """One line of `enroll-dir --json`, written as soon as the person is stored."""

    type: Literal["person"] = "person"


class EnrolDirSummary(BaseModel):
    """The last line of `enroll-dir --json`."""

    type: Literal["summary"] = "summary"
    gallery: str
    people: int
    enrolled_photos: int
    already_enrolled_photos: int
    skipped_photos: int
    errors: list[enrolment.PhotoError]


def _person_dirs(root: Path) -> list[tuple[str, list[Path]]]:
    if "://" in str(root) or str(root).startswith(("http:", "https:", "ftp:")):
        raise ForbiddenError(
            f"{root}: bulk import takes only a folder of photos you supply; vigil never downloads or crawls "
            "faces from the internet or from CCTV (EU AI Act Art. 5(1)(e))",
            hint="copy the photos you are entitled to use into DIR/<person>/ and give that folder",
        )
    if not root.is_dir():
        raise InputError(f"{root} is not a folder", hint="give a folder with one sub-folder per person")
    people = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        photos = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if photos:
            people.append((sub.name, photos))
    if not people:
        raise InputError(
            f"{root} has no person folders with photos", hint="lay it out as DIR/<person>/<photos>"
        )
    return people


def enroll_dir(
    root: Annotated[Path, typer.Argument(help="folder laid out as DIR/<person>/<photos>")],
    gallery: Annotated[str, typer.Option("--gallery", "-g", help="gallery to enrol into")],
    largest: Annotated[
        bool, typer.Option("--largest", help="take the largest face when a photo has several")
    ] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Enrol everyone in a folder: one transaction per person; bad photos are reported and skipped.
    Each person is reported as soon as they are stored (--json: one JSON object per line), then a
    summary."""
    a = app()
    enrolment.check_gallery_open(a, gallery)
    enrolment.check_consent(a, gallery, None, None, None)  # attendance: one by one, each with consent
    people = _person_dirs(root)
    total = sum(len(photos) for _, photos in people)
    results: list[enrolment.EnrolResult] = []
    errors: list[enrolment.PhotoError] = []
    with progress_bar(f"enrolling into {gallery}", total) as update:
        outcomes = enrolment.enroll_people(
            a, gallery, people, _load, largest=largest, on_photo=update, actor=cli_actor()
        )
        for outcome in outcomes:
            if outcome.result is not None:
                results.append(outcome.result)
            errors.extend(outcome.errors)
            _report_person(outcome, as_json)
    photos = [p for r in results for p in r.photos]
    summary = EnrolDirSummary(
        gallery=gallery,
        people=len(results),
        enrolled_photos=sum(p.status == "enrolled" for p in photos),
        already_enrolled_photos=sum(p.status == "already-enrolled" for p in photos),
        skipped_photos=len(errors),
        errors=errors,
    )

    def render() -> None:
        out.print(
            f"{summary.people} people, {summary.enrolled_photos} photos enrolled, "
            f"{summary.already_enrolled_photos} already enrolled, {summary.skipped_photos} skipped"
        )

    emit(summary, as_json, render)
    sys.stdout.flush()
    if errors:
        raise typer.Exit(InputError.exit_code)


def _report_person(outcome: enrolment.PersonOutcome, as_json: bool) -> None:
    """One line for one person, flushed at once (a run killed later keeps it in its log)."""
    for e in outcome.errors:
        err.print(f"[yellow]skipped[/] {escape(e.error)}", markup=True)
    if as_json:
        line = EnrolDirPerson(**outcome.model_dump())
        sys.stdout.write(line.model_dump_json() + "\n")
    elif outcome.result is None:
        out.print(f"not enrolled {outcome.person!r}: no usable photo ({len(outcome.errors)} skipped)")
    else:
        r = outcome.result
        enrolled = sum(p.status == "enrolled" for p in r.photos)
        out.print(
            f"{'enrolled' if r.created else 'updated'} {r.identity!r}: {enrolled} photos enrolled, "
            f"{len(r.photos) - enrolled} already enrolled, {len(outcome.errors)} skipped"
        )
        for w in r.warnings:
            err.print(f"  warning: {w}", markup=False)
    sys.stdout.flush()


def verify(
    image_a: Path,
    image_b: Path,
    largest: Annotated[
        bool, typer.Option("--largest", help="use the largest face when a photo has several")
    ] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Compare the faces in two photos (1:1) at the target false-match rate."""
    a, b = _load(image_a), _load(image_b)
    result = matching.verify(app(), a, b, largest=largest, actor=cli_actor())

    def render() -> None:
        verdict = "[green]same person[/]" if result.same_person else "[red]different people[/]"
        out.print(
            f"{verdict}: score {result.score:.3f}, threshold {result.threshold:.3f} "
            f"(FMR {result.fmr:g}, model {result.model})",
            markup=True,
        )

    emit(result.model_dump(include={"same_person", "score", "threshold", "model", "fmr"}), as_json, render)


def render_identify(result: IdentifyResult) -> None:
    if not result.faces:
        out.print("no face found")
        return
    table = Table("face", "box", "quality", "decision", "best matches (score / threshold)")
    for i, f in enumerate(result.faces):
        best = ", ".join(f"{m.identity}@{m.gallery} {m.score:.3f}/{m.threshold:.3f}" for m in f.matches[:3])
        table.add_row(
            str(i),
            ",".join(f"{v:.0f}" for v in f.xyxy),
            f"{f.quality:.2f}",
            f.decision or "[dim]unknown[/]",
            best or "-",
        )
    out.print(table)
    out.print(
        f"model {result.model}, FPIR {result.fpir:g}, galleries: {', '.join(result.galleries) or 'none'}"
    )


def identify(
    image: Path,
    gallery: Annotated[
        list[str] | None, typer.Option("--gallery", "-g", help="gallery to search (repeatable)")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100)] = 5,
    as_json: bool = JsonOpt,
) -> None:
    """Identify every face in a photo (1:N, open set: unknown faces get no decision)."""
    loaded = _load(image)
    result = matching.identify(app(), loaded, gallery or None, top_k, actor=cli_actor())
    emit(result, as_json, lambda: render_identify(result))
