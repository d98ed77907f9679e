"""model switches: the active model pack, and re-embedding every gallery with a new one

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00

``active_model`` holds one row: the pack (and its embedder's model id) that matching uses. A switch to
another pack (``model_switches``) re-embeds every enrolment photo with the new pack as a resumable job;
``model_switch_galleries`` records each gallery's completion, ``model_switch_failures`` the photos in
which the new detector found no face (the operator replaces them; they do not block the switch). At
most one switch runs at a time: a partial unique index on the running state refuses a second.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AUTOINCREMENT = {"sqlite_autoincrement": True}
STATE = sa.Enum("running", "done", "failed", "cancelled", name="switchstate", native_enum=False, length=20)


def _switches() -> None:
    op.create_table(
        "model_switches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack", sa.String(length=50), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("from_pack", sa.String(length=50), nullable=True),
        sa.Column("from_model_id", sa.String(length=100), nullable=True),
        sa.Column("state", STATE, nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("photos_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("photos_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("photos_failed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("galleries_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("galleries_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("flip_audited", sa.Boolean(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id"),
        **AUTOINCREMENT,
    )
    op.create_index("ix_model_switches_state", "model_switches", ["state"])
    op.create_index(
        "uq_model_switches_one_running",
        "model_switches",
        ["state"],
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    )


def upgrade() -> None:
    _switches()
    op.create_table(
        "active_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack", sa.String(length=50), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("switch_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_active_model_one_row"),
        sa.ForeignKeyConstraint(["switch_id"], ["model_switches.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "model_switch_galleries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("switch_id", sa.Integer(), nullable=False),
        sa.Column("gallery_id", sa.Integer(), nullable=False),
        sa.Column("photos", sa.Integer(), nullable=False),
        sa.Column("embedded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audited", sa.Boolean(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(["switch_id"], ["model_switches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["gallery_id"], ["galleries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("switch_id", "gallery_id", name="uq_switch_gallery"),
        **AUTOINCREMENT,
    )
    op.create_index("ix_model_switch_galleries_gallery_id", "model_switch_galleries", ["gallery_id"])
    op.create_table(
        "model_switch_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("switch_id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["switch_id"], ["model_switches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["identity_id"], ["identities.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("switch_id", "photo_id", name="uq_switch_failure_photo"),
        **AUTOINCREMENT,
    )
    op.create_index("ix_model_switch_failures_photo_id", "model_switch_failures", ["photo_id"])
    op.create_index("ix_model_switch_failures_identity_id", "model_switch_failures", ["identity_id"])


def downgrade() -> None:
    op.drop_table("model_switch_failures")
    op.drop_table("model_switch_galleries")
    op.drop_table("active_model")
    op.drop_index("uq_model_switches_one_running", table_name="model_switches")
    op.drop_index("ix_model_switches_state", table_name="model_switches")
    op.drop_table("model_switches")
