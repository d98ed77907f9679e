"""API keys belong to a person; reviews name the person behind the actor

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00

The two-person rule counted actor strings, so ``user:admin`` and ``key:k-admin`` (a key admin made)
were two people. A key now names its owner: a user (``owner_user_id``), or for a key made by a key
without an owner, that key (``owner_key_id``). A review keeps the person behind its actor
(``person``: ``user:<id>`` or ``key:<id>``). Existing keys have no owner (each is a person of its
own, as before); existing reviews get the person their actor stood for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _add_reference(table: str, column: str, target: str) -> None:
    """A nullable integer column referring to ``target.id``, without rebuilding ``table``."""
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with a reference in place; alembic would want a batch rebuild for it.
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES {target} (id)")
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), sa.ForeignKey(f"{target}.id"), nullable=True))


def upgrade() -> None:
    _add_reference("api_keys", "owner_user_id", "users")
    _add_reference("api_keys", "owner_key_id", "api_keys")
    op.add_column("alarm_reviews", sa.Column("person", sa.String(length=50), nullable=True))
    op.execute(
        "UPDATE alarm_reviews SET person = 'user:' || CAST(user_id AS VARCHAR) WHERE user_id IS NOT NULL"
    )
    op.execute(
        "UPDATE alarm_reviews SET person = (SELECT 'key:' || CAST(k.id AS VARCHAR) FROM api_keys k "
        "WHERE 'key:' || k.name = alarm_reviews.actor) WHERE person IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("alarm_reviews") as batch_op:
        batch_op.drop_column("person")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("owner_key_id")
        batch_op.drop_column("owner_user_id")
