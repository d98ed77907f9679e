"""The declarative base and the column types every table shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, TypeDecorator
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment in UTC, read back with its time zone on every database. SQLite keeps no zone, so what
    it gives back would be naive (and the API's date-times zone-less); a naive value written is taken
    as UTC, an aware one converted to UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


BigId = BigInteger().with_variant(Integer(), "sqlite")
"""Ids and other integers that grow without bound (template, audit, alarm ids; frame indexes): BIGINT on
PostgreSQL (migration 0012). SQLite keeps INTEGER, which is 64-bit there and makes the primary key the
row id (``INTEGER PRIMARY KEY AUTOINCREMENT``)."""

AUTOINCREMENT = {"sqlite_autoincrement": True}


"""An id is never handed out twice, even after the row with the largest one is deleted (migration 0006)."""
