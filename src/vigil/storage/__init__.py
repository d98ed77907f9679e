"""Storage: the catalog's tables, engine and migrations, content-addressed blobs, vector indexes and the
audit log's append and verify. Depends only on :mod:`vigil.core`; every service builds on it.

- :mod:`vigil.storage.tables`: the SQLAlchemy tables (the catalog);
- :mod:`vigil.storage.db`: the engine and sessions, Alembic migrations on open (``migrations/``);
- :mod:`vigil.storage.blobs`: photos and crops by content hash, encrypted at rest when a key is set;
- :mod:`vigil.storage.index`: the per-gallery vector indexes;
- :mod:`vigil.storage.audit`: the tamper-evident audit log, written in the caller's transaction.
"""
