"""PostgreSQL: the audit log append-only in the database, and 64-bit ids

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 15:00:00

On PostgreSQL only (on SQLite this revision does nothing: its triggers come from 0004 and its INTEGER
is 64-bit already):

- A trigger function refuses UPDATE, DELETE and TRUNCATE on ``audit_log``, as 0004's triggers do on
  SQLite. It raises SQLSTATE 23001 (``restrict_violation``), an integrity error like SQLite's abort.
  Verification still detects an edit made by someone who drops the triggers (the owner can).
- Ids, the columns that refer to them, track ids and frame indexes become BIGINT, and the sequences
  behind the ids go up to 2^63 - 1: a city's sightings, templates and audit entries outgrow 2^31. So
  does a device's reported queue depth (up to 2^53).
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BIGINT_COLUMNS = {
    "audit_log": ("id",),
    "dead_letters": ("id",),
    "devices": ("id", "queue_depth"),
    "galleries": ("id",),
    "model_switches": ("id",),
    "users": ("id",),
    "webhooks": ("id",),
    "active_model": ("switch_id",),
    "api_keys": ("id", "gallery_id", "owner_user_id", "owner_key_id"),
    "cameras": ("id", "device_id"),
    "compare_jobs": ("gallery_a_id", "gallery_b_id", "after_template_id"),
    "identities": ("id", "gallery_id"),
    "model_switch_galleries": ("id", "switch_id", "gallery_id"),
    "web_sessions": ("user_id",),
    "alarms": ("id", "camera_id", "gallery_id", "identity_id", "track_id", "frame_index"),
    "attendance_marks": ("id", "identity_id", "gallery_id", "camera_id", "track_id"),
    "clusters": ("id", "promoted_identity_id"),
    "photos": ("id", "identity_id"),
    "alarm_negatives": ("id", "alarm_id", "gallery_id", "identity_id"),
    "alarm_reviews": ("id", "alarm_id", "user_id"),
    "model_switch_failures": ("id", "switch_id", "photo_id", "identity_id"),
    "sightings": ("id", "camera_id", "track_id", "identity_id", "cluster_id"),
    "templates": ("id", "identity_id", "photo_id"),
}

APPEND_ONLY = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
END
$$
"""
EVENTS = {
    "update": "BEFORE UPDATE ON audit_log FOR EACH ROW",
    "delete": "BEFORE DELETE ON audit_log FOR EACH ROW",
}
EVENTS["truncate"] = "BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT"


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _set_types(sql_type: str) -> None:
    for table, columns in BIGINT_COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {c} TYPE {sql_type}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
        if "id" in columns:
            op.execute(f"ALTER SEQUENCE IF EXISTS {table}_id_seq AS {sql_type}")


def upgrade() -> None:
    if not _postgresql():
        return
    op.execute(APPEND_ONLY)
    for name, when in EVENTS.items():
        op.execute(f"CREATE TRIGGER audit_log_no_{name} {when} EXECUTE FUNCTION audit_log_append_only()")
    _set_types("BIGINT")


def downgrade() -> None:
    if not _postgresql():
        return
    _set_types("INTEGER")
    for name in EVENTS:
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{name} ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
