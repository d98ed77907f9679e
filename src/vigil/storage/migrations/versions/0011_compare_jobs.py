"""comparison jobs that survive a restart (issue 15, item 5)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 07:30:00

``compare_jobs``: a gallery-against-gallery comparison, its request (JSON), the threshold and rate
fixed when it was planned, its progress and a checkpoint: the last template of A searched and the
pairs found so far (template and identity ids with their scores, sealed at rest; names are looked up
when the result is read, so an erased identity drops out of stored results). A job left ``running``
or ``interrupted`` by a stopped or killed server goes on from its checkpoint when the server starts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compare_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("case", sa.String(length=200), nullable=False),
        sa.Column("gallery_a", sa.String(length=200), nullable=False),
        sa.Column("gallery_b", sa.String(length=200), nullable=False),
        sa.Column("gallery_a_id", sa.Integer(), nullable=True),
        sa.Column("gallery_b_id", sa.Integer(), nullable=True),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("fpir", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("after_template_id", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("runs", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pairs", sa.LargeBinary(), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["gallery_a_id"], ["galleries.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["gallery_b_id"], ["galleries.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_compare_jobs_state", "compare_jobs", ["state"])
    op.create_index("ix_compare_jobs_created_at", "compare_jobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_compare_jobs_created_at", "compare_jobs")
    op.drop_index("ix_compare_jobs_state", "compare_jobs")
    op.drop_table("compare_jobs")
