"""`vigil eval video`: per-clip and overall alarm figures, recomputed independently."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.eval.video import evaluate_video, name_key, read_manifest, read_stills, write_video_report


@pytest.fixture
def setup(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    # Stills beside the manifest (the default): one person as a folder, one as a file named after him.
    stills = tmp_path / "stills"
    (stills / "Barack Obama").mkdir(parents=True)
    shutil.copy(shared_data / "people" / "obama.jpg", stills / "Barack Obama" / "obama.jpg")
    shutil.copy(shared_data / "people" / "lin-manuel-miranda.png", stills / "lin_manuel_miranda1.png")
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(shared_data / "video" / "short_hamilton_clip.mp4", clips / "stage.mp4")
    manifest = tmp_path / "manifest.csv"
    # The same clip twice: once with its content declared, once declared empty (so its alarm is false);
    # names are written otherwise than the stills are named.
    manifest.write_text(
        'clip,identities\nclips/stage.mp4,"Lin-Manuel Miranda;barack obama"\nclips/stage.mp4,\n'
    )
    return manifest, stills


def test_eval_video_counts(setup: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, _ = setup
    seen: list[tuple[int, int]] = []
    result = evaluate_video(
        Settings(data_dir=tmp_path / "data"), manifest, on_progress=lambda d, t: seen.append((d, t))
    )
    # Progress follows the frames of both clips (275 each) and ends at the total.
    assert seen[-1] == (550, 550) and all(t == 550 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 500
    assert sorted(result.enrolled) == ["Barack Obama", "lin_manuel_miranda"]
    declared, distractor = result.clips
    assert declared.present == ["Barack Obama", "lin_manuel_miranda"] and distractor.present == []
    assert declared.correct_alarms >= 1 and "lin_manuel_miranda" in declared.first_correct_alarm_s
    assert distractor.correct_alarms == 0 and distractor.false_alarms == declared.correct_alarms
    # Independent recomputation of the overall figures from the per-clip alarms.
    alarms = [(c, a) for c in result.clips for a in c.alarms]
    assert result.correct_alarms == sum(a.identity in c.present for c, a in alarms)
    assert result.false_alarms == sum(a.identity not in c.present for c, a in alarms)
    hours = sum(c.seconds for c in result.clips) / 3600
    assert result.hours == pytest.approx(hours, rel=1e-4)
    assert result.false_alarms_per_hour == pytest.approx(result.false_alarms / hours, rel=1e-3)
    missed = sum(len(set(c.present) - set(c.first_correct_alarm_s)) for c in result.clips)
    assert result.people_missed == missed and result.miss_rate == pytest.approx(missed / 2)
    assert declared.seconds == pytest.approx(275 / 29.97, rel=1e-3)
    first = declared.first_correct_alarm_s["lin_manuel_miranda"]
    assert 0 <= first < declared.seconds  # his wide shot opens the clip
    assert result.median_time_to_first_alarm_s == pytest.approx(
        float(np.median(list(declared.first_correct_alarm_s.values())))
    )

    write_video_report(result, tmp_path / "rep", "vigil eval video ...")
    assert (tmp_path / "rep" / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert "false alarms" in (tmp_path / "rep" / "report.html").read_text()


def test_bad_manifests(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such manifest"):
        read_manifest(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,when\na.mp4,x\n")
    with pytest.raises(InputError, match="clip and identities"):
        read_manifest(bad)

    bad.write_text("clip,identities\nmissing.mp4,x\n")
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(bad)


def test_manifest_and_stills_variants(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    tsv = tmp_path / "clips.tsv"
    tsv.write_text("\ufeffVideo\tPeople\na.mp4\tAnn Lee|Bo\n\n")
    (entry,) = read_manifest(tsv)
    assert entry.clip == (tmp_path / "a.mp4").resolve() and entry.identities == ["Ann Lee", "Bo"]
    with pytest.raises(InputError, match="no stills given"):
        evaluate_video(Settings(data_dir=tmp_path / "data"), tsv)
    assert name_key("Lin-Manuel  Miranda") == name_key("lin_manuel_miranda") == "lin manuel miranda"

    stills = tmp_path / "stills"
    (stills / "Ann Lee").mkdir(parents=True)
    for f in ("Ann Lee/1.jpg", "ann-lee-2.jpg", "bo.png", "notes.txt", ".hidden.jpg"):
        (stills / f).write_bytes(b"x")
    people = read_stills(stills)
    assert {k: [p.name for p in v] for k, v in people.items()} == {
        "Ann Lee": ["1.jpg", "ann-lee-2.jpg"],
        "bo": ["bo.png"],
    }
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no photos to enrol"):
        read_stills(tmp_path / "empty")
