"""Alembic environment: runs on the connection vigil passes in (see vigil.storage.db.migrate)."""

from __future__ import annotations

from alembic import context

from vigil.storage.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for `alembic` run by hand
    raise RuntimeError("run migrations through vigil (vigil.storage.db.migrate)")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
