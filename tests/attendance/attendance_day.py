"""A working day at an entrance, rendered from LFW faces and run through the real pipeline and models
(see tests/video/videoclips.py for the renderer); the fixture is in conftest.py."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from vigil.storage.tables import AttendanceMark, Gallery, Identity

TESTS = Path(__file__).resolve().parents[1]
ZONE = "Europe/Paris"
DAY = date(2025, 3, 3)  # a Monday
CONSENT = date(2025, 3, 1)
SCHEDULE = {"start": "09:00", "end": "17:00", "days": "mon-fri", "grace": 10}

# Who is who (LFW): enrolled from one photo, walking through the entrance on another.
A = ("Paul Wolfowitz", "Paul_Wolfowitz/Paul_Wolfowitz_0003.jpg", "Paul_Wolfowitz/Paul_Wolfowitz_0002.jpg")
B = ("Ricardo Lagos", "Ricardo_Lagos/Ricardo_Lagos_0001.jpg", "Ricardo_Lagos/Ricardo_Lagos_0002.jpg")
C_WALK = "Jennifer_Lopez/Jennifer_Lopez_0003.jpg"  # enrolled nowhere
D = ("Aaron Sorkin", "Aaron_Sorkin/Aaron_Sorkin_0001.jpg")  # enrolled, never comes
E = ("Aaron Peirsol", "Aaron_Peirsol/Aaron_Peirsol_0001.jpg")  # consented on the day itself
WANTED = ("Abdoulaye Wade", "Abdoulaye_Wade/Abdoulaye_Wade_0004.jpg")  # a watchlist, not in the video


def load_helper(name: str, path: Path) -> ModuleType:
    """A helper module of another test folder, imported once by path (test folders are not packages)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def local(hh_mm: str, day: date = DAY) -> datetime:
    return datetime.combine(day, time.fromisoformat(hh_mm), ZoneInfo(ZONE))


@dataclass
class Clip:
    path: Path
    start: datetime
    camera: str


@dataclass
class EntranceDay:
    """The catalog after a day at the entrance; ``app`` stays open for the tests."""

    data_dir: Path
    app: Any
    summaries: list[dict[str, Any]] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _clips(lfw: Path, folder: Path) -> dict[str, Path]:
    video = load_helper("videoclips", TESTS / "video" / "videoclips.py")
    walks = {
        # A arrives at 08:55 with a stranger (C) crossing the other way.
        "morning": [(str(lfw / A[2]), 0, 59, 20, 1), (str(lfw / C_WALK), 5, 64, 195, -1)],
        # B arrives at 09:20: late (start 09:00 + 10 minutes of grace).
        "late": [(str(lfw / B[2]), 0, 59, 100, 1)],
        # A leaves at 17:05.
        "evening": [(str(lfw / A[2]), 0, 59, 100, -1)],
    }
    paths = {}
    for name, w in walks.items():
        paths[name] = folder / f"{name}.mp4"
        video.write_video(str(paths[name]), video.render_walks(w, 70))
    return paths


def build_day(shared_data: Path, engine: Any, root: Path) -> EntranceDay:
    """Gallery ``staff`` (attendance, 09:00-17:00 mon-fri, 10 min grace) with A, B, D (consent 1 March)
    and E (consent on the day); watchlist ``wanted`` with someone else. On Monday 3 March 2025
    (Europe/Paris) the entrance camera sees A at 08:55 with C (enrolled nowhere), B at 09:20 and A
    again at 17:05; a corridor camera (not an entrance) also sees A at 08:57."""
    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.gallery import enroll as enrolment
    from vigil.gallery import galleries
    from vigil.video.cameras import add_camera
    from vigil.video.watch import watch
    from vigil.vision.image import load_image

    lfw = shared_data / "lfw-dev"
    clips = _clips(lfw, root)
    app = App(Settings(data_dir=root / "data", timezone=ZONE, media_dirs=[root]), engine_override=engine)
    galleries.create_gallery(
        app,
        galleries.validate_spec(
            name="staff",
            kind="attendance",
            purpose="staff attendance",
            attendance_start=SCHEDULE["start"],
            attendance_end=SCHEDULE["end"],
            attendance_days=SCHEDULE["days"],
            attendance_grace_min=SCHEDULE["grace"],
        ),
    )
    for (name, photo, *_), consent in ((A, CONSENT), (B, CONSENT), (D, CONSENT), (E, DAY)):
        enrolment.enroll(
            app, "staff", name, [load_image(lfw / photo)], consent_on=consent, consent_by="HR, J. Doe"
        )
    galleries.create_gallery(
        app,
        galleries.validate_spec(
            name="wanted",
            kind="watchlist",
            purpose="test",
            legal_basis="court order 12",
            authorized_by="Judge A",
            expires_on=date.today().replace(year=date.today().year + 1),
        ),
    )
    enrolment.enroll(app, "wanted", WANTED[0], [load_image(lfw / WANTED[1])])
    add_camera(app, "front-door", str(clips["morning"]), kind="entrance", site="HQ")
    add_camera(app, "corridor", str(clips["morning"]), kind="fixed", site="HQ")
    day = EntranceDay(root / "data", app)
    for clip in (
        Clip(clips["morning"], local("08:55"), "front-door"),
        Clip(clips["morning"], local("08:57"), "corridor"),
        Clip(clips["late"], local("09:20"), "front-door"),
        Clip(clips["evening"], local("17:05"), "front-door"),
    ):
        day.summaries.append(
            watch(
                app,
                str(clip.path),
                camera=clip.camera,
                start=clip.start,
                on_event=day.events.append,
                on_warning=day.warnings.append,
            )
        )
    return day


def independent(app: Any, gallery: str, first: date, last: date) -> list[dict[str, Any]]:
    """The report recomputed from the catalog's marks, written without the library's code."""
    zone = ZoneInfo(ZONE)
    with app.db.session() as s:
        g = s.scalar(select(Gallery).where(Gallery.name == gallery))
        people = list(s.scalars(select(Identity).where(Identity.gallery_id == g.id)))
        marks = s.execute(
            select(AttendanceMark.identity_id, AttendanceMark.at).where(AttendanceMark.gallery_id == g.id)
        ).all()
        start_h, start_m = map(int, g.attendance_start.split(":"))
        end_h, end_m = map(int, g.attendance_end.split(":"))
        working = g.attendance_days.split(",")
        grace = g.attendance_grace_min
    rows = []
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    day = first
    while day <= last:
        is_working = names[day.weekday()] in working
        start = datetime(day.year, day.month, day.day, start_h, start_m, tzinfo=zone)
        end = datetime(day.year, day.month, day.day, end_h, end_m, tzinfo=zone)
        for p in people:
            times = sorted(
                at.replace(tzinfo=UTC).astimezone(zone)
                for iid, at in marks
                if iid == p.id and at.replace(tzinfo=UTC).astimezone(zone).date() == day
            )
            if times:
                late = is_working and times[0] > start + timedelta(minutes=grace)
                out = times[-1] if len(times) > 1 else None
                rows.append(
                    {
                        "date": day.isoformat(),
                        "person": p.name,
                        "status": "late" if late else "present",
                        "first_in": times[0].isoformat(timespec="seconds"),
                        "last_out": out.isoformat(timespec="seconds") if out else "",
                        "marks": str(len(times)),
                        "late_by_min": f"{round((times[0] - start).total_seconds() / 60, 1):g}"
                        if late
                        else "",
                        "left_early": "yes" if is_working and out is not None and out < end else "no",
                    }
                )
            elif is_working and p.consent_on is not None and p.consent_on < day:
                rows.append(
                    {
                        "date": day.isoformat(),
                        "person": p.name,
                        "status": "absent",
                        "first_in": "",
                        "last_out": "",
                        "marks": "0",
                        "late_by_min": "",
                        "left_early": "no",
                    }
                )
        day += timedelta(days=1)
    return sorted(rows, key=lambda r: (r["date"], r["person"].casefold()))


def comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    keys = ("date", "person", "status", "first_in", "last_out", "marks", "late_by_min", "left_early")
    return [{k: r[k] for k in keys} for r in rows]
