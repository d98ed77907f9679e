"""Watchlist alarms on video clips with known content, measured per clip and overall.

The manifest is a CSV file (comma- or tab-separated) with a header and two columns: ``clip`` (a video
file, relative to the manifest's folder or absolute; ``video``, ``file`` and ``path`` are accepted as
the column name too) and ``identities`` (the people who appear in it, separated by ``;`` or ``|``;
empty for a distractor clip in which no enrolled person appears; ``identity``, ``people`` and
``persons`` are accepted too). ``stills`` holds the photos to enrol: a folder per identity, and/or
image files directly in it named after the person (``lin-manuel-miranda.png``, ``obama2.jpg``; a
trailing number is dropped). Without ``stills`` the folder ``stills/`` beside the manifest is used.
Names are compared without regard to case, spaces, ``-`` and ``_`` ("Lin-Manuel Miranda" is
``lin_manuel_miranda``). Every identity is enrolled (largest face of each photo) into one watchlist
in a temporary data directory, so the user's catalog is never touched. Each clip is then watched
with the default pipeline.

Per clip: correct alarms (for someone in the clip), false alarms (for someone enrolled but not in the
clip), missed people (in the clip and enrolled, never alarmed), and the time from the clip's start to
the first correct alarm for each person. Overall: the same summed, the miss rate, and false alarms per
hour of video.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from pydantic import BaseModel

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import InputError, VigilError
from vigil.eval.calibrate import list_identities
from vigil.events.schemas import Alarm
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.video.pipeline import PipelineEvent
from vigil.video.sources import FileSource
from vigil.video.watch import watch
from vigil.vision.engine import build_engine
from vigil.vision.image import IMAGE_SUFFIXES, load_image

WATCHLIST = "eval-watchlist"
CLIP_COLUMNS = ("clip", "video", "file", "path")
IDENTITY_COLUMNS = ("identities", "identity", "people", "persons")


def name_key(name: str) -> str:
    """The form in which names are compared: case-folded, runs of spaces, ``-`` and ``_`` as one space."""
    return " ".join(re.split(r"[\s_\-]+", name.casefold())).strip()


def _stem_name(path: Path) -> str:
    """The person a flat still is named after: the file stem without a trailing number."""
    return re.sub(r"[\s_\-]*\d+$", "", path.stem) or path.stem


class ClipEntry(BaseModel):
    clip: Path
    identities: list[str]


class AlarmOutcome(BaseModel):
    identity: str
    correct: bool
    seconds: float
    score: float
    track_id: int


class ClipResult(BaseModel):
    clip: str
    present: list[str]
    seconds: float
    frames: int
    fps: float
    correct_alarms: int
    false_alarms: int
    missed: list[str]
    first_correct_alarm_s: dict[str, float]
    alarms: list[AlarmOutcome]
    error: str | None = None


class VideoEvalResult(BaseModel):
    clips: list[ClipResult]
    enrolled: list[str]
    model: str
    hours: float
    correct_alarms: int
    false_alarms: int
    false_alarms_per_hour: float
    people_present: int
    people_missed: int
    miss_rate: float
    median_time_to_first_alarm_s: float | None


def _column(fieldnames: list[str], accepted: tuple[str, ...]) -> str | None:
    by_key = {f.strip().casefold(): f for f in fieldnames}
    return next((by_key[a] for a in accepted if a in by_key), None)


def read_manifest(path: Path) -> list[ClipEntry]:
    if not path.is_file():
        raise InputError(f"{path}: no such manifest", hint="a CSV file with the columns clip,identities")
    entries = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = fh.readline()
        fh.seek(0)
        reader = csv.DictReader(fh, delimiter="\t" if "\t" in header and "," not in header else ",")
        fields = list(reader.fieldnames or [])
        clip_col, names_col = _column(fields, CLIP_COLUMNS), _column(fields, IDENTITY_COLUMNS)
        if clip_col is None or names_col is None:
            raise InputError(
                f"{path}: the header must name the columns clip and identities (found: {', '.join(fields)})",
                hint='for example:\nclip,identities\nstage.mp4,"Lin-Manuel Miranda"\nstreet.mp4,',
            )
        for line, row in enumerate(reader, start=2):
            if not (row.get(clip_col) or "").strip():
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # a blank line
                raise InputError(f"{path}:{line}: empty clip")
            clip = (path.parent / row[clip_col].strip()).expanduser().resolve()
            if not clip.is_file():
                raise InputError(f"{path}:{line}: clip {clip} does not exist")
            names = [n.strip() for n in re.split(r"[;|]", row.get(names_col) or "") if n.strip()]
            entries.append(ClipEntry(clip=clip, identities=names))
    if not entries:
        raise InputError(f"{path}: no clips listed")
    return entries


def read_stills(stills: Path) -> dict[str, list[Path]]:
    """Identity name -> its photos: one folder per identity, plus flat files named after the person.

    Raises:
        InputError: ``stills`` is not a folder or holds no photos.
    """
    people = list_identities(stills)
    keys = {name_key(n): n for n in people}
    flat = sorted(
        p
        for p in stills.iterdir()
        if p.is_file() and not p.name.startswith((".", "_")) and p.suffix.lower() in IMAGE_SUFFIXES
    )
    for photo in flat:
        name = keys.setdefault(name_key(_stem_name(photo)), _stem_name(photo))
        people.setdefault(name, []).append(photo)
    if not people:
        raise InputError(
            f"{stills}: no photos to enrol",
            hint="give stills/<person>/<photos> or photos named after the person (stills/<person>.jpg)",
        )
    return people


def _enrol(app: App, stills: Path, progress: Callable[[str], None]) -> list[str]:
    people = read_stills(stills)
    spec = galleries.validate_spec(
        name=WATCHLIST,
        kind="watchlist",
        purpose="accuracy evaluation",
        legal_basis="evaluation on test data, no live use",
        authorized_by="vigil eval video",
        expires_on=date.today() + timedelta(days=1),
    )
    galleries.create_gallery(app, spec)
    enrolled = []
    for name, photos in people.items():
        images = []
        for p in photos:
            try:
                images.append(load_image(p))
            except VigilError as exc:
                progress(f"skipping {p}: {exc}")
        prepared = []
        for image in images:
            try:
                prepared.append(enrolment.prepare_face(app, image, largest=True))
            except VigilError as exc:
                progress(f"skipping {image.name}: {exc}")
        if not prepared:
            continue
        try:
            enrolment.enroll_prepared(app, WATCHLIST, name, prepared)
        except VigilError as exc:  # the same photo under two names, for instance
            progress(f"not enrolling {name}: {exc}")
            continue
        enrolled.append(name)
    return enrolled


def evaluate_video(
    settings: Settings,
    manifest: Path,
    stills: Path | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    on_warning: Callable[[str], None] = lambda m: None,
) -> VideoEvalResult:
    """Enrol ``stills`` (default: ``stills/`` beside the manifest) and watch every clip of ``manifest``.

    ``on_progress(frames_done, frames_total)`` follows the frames of all clips together.

    Raises:
        InputError: the manifest or the stills cannot be used (the message says which and why).
    """
    entries = read_manifest(manifest)
    if stills is None:
        stills = manifest.parent / "stills"
        if not stills.is_dir():
            raise InputError(
                f"no stills given and no folder {stills}",
                hint="pass --stills DIR (a folder per identity, or photos named after the person)",
            )
    with tempfile.TemporaryDirectory(prefix="vigil-eval-video-") as tmp:
        # The models are the caller's (their pack's files stay where they are installed).
        engine = build_engine(settings)
        local = settings.model_copy(update={"data_dir": Path(tmp), "database_url": None})
        app = App(local, engine_override=engine)
        try:
            enrolled = _enrol(app, stills, on_warning)
            keys = {name_key(n) for n in enrolled}
            unknown = sorted({n for e in entries for n in e.identities if name_key(n) not in keys})
            if unknown:
                on_warning("not enrolled (no usable stills), counted as not present: " + ", ".join(unknown))
            probes = [_probe(e.clip) for e in entries]
            frames = [0 if isinstance(pr, VigilError) else pr[0] for pr in probes]
            total = sum(frames)
            report = on_progress or (lambda done, total: None)

            def from_offset(offset: int) -> Callable[[int, int | None], None]:
                return lambda n, _: report(min(offset + n, total), total)

            results = []
            for i, entry in enumerate(entries):
                offset = sum(frames[:i])
                results.append(_run_clip(app, entry, set(enrolled), probes[i], from_offset(offset)))
                report(offset + frames[i], total)
            model = app.engine.model_id
        finally:
            app.close()
    return summarise(results, enrolled, model)


def _probe(clip: Path) -> tuple[int, float] | VigilError:
    """The clip's frame count as its container states it (0 when unknown) and frame rate, opened once;
    or why it cannot be opened (its run reports that)."""
    try:
        source = FileSource(clip, clip.stem)
    except VigilError as exc:
        return exc
    try:
        return max(source.frame_count, 0), source.source_fps
    finally:
        source.close()


def _run_clip(
    app: App,
    entry: ClipEntry,
    enrolled: set[str],
    probe: tuple[int, float] | VigilError,
    progress: Callable[[int, int | None], None],
) -> ClipResult:
    declared = {name_key(n) for n in entry.identities}
    present = sorted(n for n in enrolled if name_key(n) in declared)
    events: list[PipelineEvent] = []
    try:
        if isinstance(probe, VigilError):
            raise probe
        source_fps = probe[1]
        summary = watch(
            app, str(entry.clip), galleries=[WATCHLIST], on_event=events.append, on_progress=progress
        )
    except VigilError as exc:
        return ClipResult(
            clip=str(entry.clip),
            present=present,
            seconds=0.0,
            frames=0,
            fps=0.0,
            correct_alarms=0,
            false_alarms=0,
            missed=present,
            first_correct_alarm_s={},
            alarms=[],
            error=str(exc),
        )
    alarms = [e for e in events if isinstance(e, Alarm)]
    outcomes = [
        AlarmOutcome(
            identity=a.identity,
            correct=a.identity in present,
            seconds=round(a.frame / source_fps, 3),
            score=a.score,
            track_id=a.track_id,
        )
        for a in alarms
    ]
    first: dict[str, float] = {}
    for o in outcomes:
        if o.correct and o.identity not in first:
            first[o.identity] = o.seconds
    return ClipResult(
        clip=str(entry.clip),
        present=present,
        seconds=round(summary["frames"] / source_fps, 3),
        frames=summary["frames"],
        fps=summary["fps"],
        correct_alarms=sum(o.correct for o in outcomes),
        false_alarms=sum(not o.correct for o in outcomes),
        missed=[p for p in present if p not in first],
        first_correct_alarm_s=first,
        alarms=outcomes,
    )


def summarise(results: list[ClipResult], enrolled: list[str], model: str) -> VideoEvalResult:
    import numpy as np

    hours = sum(r.seconds for r in results) / 3600
    present = sum(len(r.present) for r in results)
    missed = sum(len(r.missed) for r in results)
    false = sum(r.false_alarms for r in results)
    firsts = [s for r in results for s in r.first_correct_alarm_s.values()]
    return VideoEvalResult(
        clips=results,
        enrolled=enrolled,
        model=model,
        hours=round(hours, 6),
        correct_alarms=sum(r.correct_alarms for r in results),
        false_alarms=false,
        false_alarms_per_hour=round(false / hours, 3) if hours > 0 else 0.0,
        people_present=present,
        people_missed=missed,
        miss_rate=round(missed / present, 6) if present else 0.0,
        median_time_to_first_alarm_s=float(np.median(firsts)) if firsts else None,
    )


def plot_timeline(result: VideoEvalResult, path: Path) -> None:
    """One row per clip: the clip's length, correct alarms (green) and false alarms (red) over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result.clips)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * n), dpi=110)
    for row, clip in enumerate(result.clips):
        ax.plot([0, clip.seconds], [row, row], color="#bbb", linewidth=6, solid_capstyle="butt")
        for a in clip.alarms:
            ax.plot(a.seconds, row, "o", color="#1a7f37" if a.correct else "#cf222e")
            ax.annotate(a.identity, (a.seconds, row), textcoords="offset points", xytext=(3, 6), fontsize=7)
    ax.set_yticks(range(n), [Path(c.clip).name for c in result.clips])
    ax.set_xlabel("seconds into the clip (green: correct alarm, red: false alarm)")
    ax.set_ylim(-0.7, n - 0.3)
    ax.invert_yaxis()
    ax.set_title("vigil eval video: alarms per clip")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


def write_video_report(result: VideoEvalResult, out: Path, command: str) -> None:
    """``out/video.json``, ``out/timeline.png`` and ``out/report.html``."""
    from vigil.eval.identify import html_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "video.json").write_text(result.model_dump_json(indent=1))
    plot_timeline(result, out / "timeline.png")
    rows = [
        ("model", result.model),
        ("clips / hours of video", f"{len(result.clips)} / {result.hours:.4f}"),
        ("correct alarms", str(result.correct_alarms)),
        ("false alarms (per hour)", f"{result.false_alarms} ({result.false_alarms_per_hour:g})"),
        ("people missed / present", f"{result.people_missed} / {result.people_present}"),
        ("median time to first correct alarm", f"{result.median_time_to_first_alarm_s} s"),
    ]
    for c in result.clips:
        rows.append(
            (
                Path(c.clip).name,
                f"present: {', '.join(c.present) or '-'}; correct {c.correct_alarms}, "
                f"false {c.false_alarms}, missed {', '.join(c.missed) or '-'}"
                + (f"; error: {c.error}" if c.error else ""),
            )
        )
    (out / "report.html").write_text(html_report("vigil eval video", rows, out / "timeline.png", command))
