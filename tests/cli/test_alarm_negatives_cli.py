"""`vigil alarm list/show/review --not-this-person/undo-negative` on real alarms (LFW photos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from negatives_seed import LOOKALIKE, enrol_person, photo_alarm, photos, store
from vigil import accounts
from vigil.app import App
from vigil.events.schemas import Alarm
from vigil.storage.tables import Role

pytestmark = pytest.mark.catalogs


def test_review_not_this_person_then_undo(app: App, run: Any, shared_data: Path) -> None:
    enrol_person(app, shared_data)
    jolie = photos(shared_data, LOOKALIKE)
    first = photo_alarm(app, jolie[0], 0)
    assert first is not None
    passed, _ = store(app, first)
    assert isinstance(passed, Alarm)
    accounts.add_user(app, "rev", Role.operator, by="test")
    accounts.add_user(app, "aud", Role.auditor, by="test")
    app.close()  # the CLI opens the same data directory

    review = ["alarm", "review", str(passed.alarm_id), "dismiss", "--version", "0", "--reason", "her sister"]
    _, err = run(*review, "--as", "aud", "--not-this-person", code=7)
    assert "auditors read alarms" in err
    _, err = run("alarm", "review", str(passed.alarm_id), "confirm", "--as", "rev", "--version", "0",
                 "--not-this-person", code=3)  # fmt: skip
    assert "goes with a dismissal" in err
    out, _ = run(*review, "--as", "rev", "--not-this-person", "--json")
    detail = json.loads(out)
    assert detail["state"] == "dismissed" and detail["negative"]["created_by"] == "user:rev"
    negative = detail["negative"]["id"]

    seeded = App(app.settings, engine_override=app.engine)
    try:
        later = photo_alarm(seeded, jolie[1], 1)
        assert later is not None and later.suppressed_by == [negative]
        assert store(seeded, later)[0] is None
    finally:
        seeded.close()

    out, _ = run("alarm", "list", "--state", "suppressed")
    assert "suppressed by 1 earlier dismissals" in out and "Jennifer Lopez" in out
    suppressed_id = json.loads(run("alarm", "list", "--state", "suppressed", "--json")[0])[0]["id"]
    out, _ = run("alarm", "show", str(suppressed_id))
    assert f"negative {negative} from alarm #{passed.alarm_id} (active)" in out
    out, _ = run("alarm", "undo-negative", str(negative))
    assert f"negative example {negative} (from alarm #{passed.alarm_id}) undone" in out
    _, err = run("alarm", "undo-negative", str(negative), code=6)
    assert "undone already" in err
    _, err = run("alarm", "undo-negative", "999", code=5)
    assert "no negative example with id 999" in err
    out, _ = run("alarm", "show", str(passed.alarm_id))
    assert f"kept as negative example {negative} (undone by cli:" in out
