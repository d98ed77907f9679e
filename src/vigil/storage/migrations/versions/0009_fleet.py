"""fleet: edge devices, cameras assigned to them, and event ids on what the pipeline stores

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 09:00:00

``devices`` are the machines that run cameras away from the server (a pole, a site's box). An admin
adds one and gets a one-time pairing token (only its SHA-256 is kept); pairing turns it into a device
credential (SHA-256 kept) and a signing key (sealed at rest) that signs every event the device sends.
A revoked device is refused at once. ``cameras.device_id`` assigns a camera to a device.

``event_id`` on alarms, attendance marks and sightings is the id of the pipeline event that caused the
row: unique, so an event delivered twice (a worker replaying after a restart, a message redelivered
after a server restart) is stored once, by the database itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATE = sa.Enum("pending", "active", "revoked", name="devicestate", native_enum=False, length=20)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("site", sa.String(length=200), nullable=True),
        sa.Column("state", STATE, nullable=False),
        sa.Column("keeps_templates", sa.Boolean(), nullable=False, server_default="1"),
        sa.Column("pairing_sha256", sa.String(length=64), nullable=True),
        sa.Column("pairing_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credential_sha256", sa.String(length=64), nullable=True),
        sa.Column("signing_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.String(length=50), nullable=True),
        sa.Column("queue_depth", sa.Integer(), nullable=True),
        sa.Column("status_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_devices_name"),
        sa.UniqueConstraint("pairing_sha256", name="uq_devices_pairing"),
        sa.UniqueConstraint("credential_sha256", name="uq_devices_credential"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("cameras") as b:
        b.add_column(sa.Column("device_id", sa.Integer(), nullable=True))
        b.create_foreign_key("fk_cameras_device", "devices", ["device_id"], ["id"], ondelete="SET NULL")
        b.create_index("ix_cameras_device_id", ["device_id"])
    with op.batch_alter_table("alarms") as b:
        b.add_column(sa.Column("event_id", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("device_name", sa.String(length=200), nullable=True))
        b.create_index("uq_alarms_event_id", ["event_id"], unique=True)
        b.create_index("ix_alarms_device_name", ["device_name"])
    for table in ("attendance_marks", "sightings"):
        with op.batch_alter_table(table) as b:
            b.add_column(sa.Column("event_id", sa.String(length=64), nullable=True))
            b.create_index(f"uq_{table}_event_id", ["event_id"], unique=True)


def downgrade() -> None:
    for table in ("sightings", "attendance_marks"):
        with op.batch_alter_table(table) as b:
            b.drop_index(f"uq_{table}_event_id")
            b.drop_column("event_id")
    with op.batch_alter_table("alarms") as b:
        b.drop_index("ix_alarms_device_name")
        b.drop_index("uq_alarms_event_id")
        b.drop_column("device_name")
        b.drop_column("event_id")
    with op.batch_alter_table("cameras") as b:
        b.drop_index("ix_cameras_device_id")
        b.drop_constraint("fk_cameras_device", type_="foreignkey")
        b.drop_column("device_id")
    op.drop_table("devices")
