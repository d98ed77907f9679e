"""ids are never reused: SQLite tables get AUTOINCREMENT

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:40:00

Without AUTOINCREMENT, SQLite hands the largest deleted id out again: a gallery deleted and recreated
got the same id, a new enrolment the templates ids of a removed one, and any cache keyed by id (the
vector indexes of every process) named the wrong person. PostgreSQL sequences never go back, so
there is nothing to do there. The audit log is append-only (its rows are never deleted) and keeps
its triggers; web sessions are keyed by a token hash.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = (
    "galleries",
    "identities",
    "photos",
    "templates",
    "cameras",
    "alarms",
    "alarm_reviews",
    "users",
    "api_keys",
    "webhooks",
    "dead_letters",
    "sightings",
    "clusters",
    "attendance_marks",
)


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
