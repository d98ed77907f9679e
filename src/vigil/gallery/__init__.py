"""Galleries: the catalog (SQLAlchemy), content-addressed photos, vector indexes and matching."""
