"""reviews that teach, and stranger alarms (issue 17, items 1 and 2)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 07:00:00

``alarm_negatives``: dismissing an alarm as "not this person" keeps the stranger's template as a
negative example for that identity in that watchlist. It belongs to the dismissed alarm (deleted with
it, so it is purged with the alarm's retention); an undo sets ``undone_at``. A later face nearer to an
active negative than to the identity's own templates raises no alarm for that identity: it is stored
as a ``suppressed`` alarm, whose ``suppressed_by`` lists the negatives (ids, JSON) that stopped it.

``alarms.kind``: ``match`` (a watchlist hit) or ``stranger`` (a face that matched none of the galleries
a camera's stranger rule names; no gallery, no identity). ``alarms.retention_days``: how long a
stranger alarm (and its crop) is kept, copied from the rule that raised it.

``cameras.stranger_galleries`` (JSON list of gallery names), ``stranger_hours`` (``HH:MM-HH:MM`` with
optional days, local time; None: always), ``stranger_min_quality`` (None: the setting
``stranger_min_quality``): the camera's stranger rule, off while ``stranger_galleries`` is None.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarm_negatives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("gallery_id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_by", sa.String(length=200), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["gallery_id"], ["galleries.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["identity_id"], ["identities.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alarm_id", name="uq_alarm_negatives_alarm"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alarm_negatives_identity", "alarm_negatives", ["identity_id", "model_id"])
    op.create_index("ix_alarm_negatives_gallery", "alarm_negatives", ["gallery_id"])
    with op.batch_alter_table("alarms") as b:
        b.add_column(sa.Column("kind", sa.String(length=20), nullable=False, server_default="match"))
        b.add_column(sa.Column("suppressed_by", sa.Text(), nullable=True))
        b.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
        b.create_index("ix_alarms_kind", ["kind"])
    with op.batch_alter_table("cameras") as b:
        b.add_column(sa.Column("stranger_galleries", sa.Text(), nullable=True))
        b.add_column(sa.Column("stranger_hours", sa.String(length=200), nullable=True))
        b.add_column(sa.Column("stranger_min_quality", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cameras") as b:
        b.drop_column("stranger_min_quality")
        b.drop_column("stranger_hours")
        b.drop_column("stranger_galleries")
    with op.batch_alter_table("alarms") as b:
        b.drop_index("ix_alarms_kind")
        b.drop_column("retention_days")
        b.drop_column("suppressed_by")
        b.drop_column("kind")
    op.drop_index("ix_alarm_negatives_gallery", "alarm_negatives")
    op.drop_index("ix_alarm_negatives_identity", "alarm_negatives")
    op.drop_table("alarm_negatives")
