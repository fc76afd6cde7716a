"""Read-only answers straight from a SQLite store, with the standard library only.

A certificate admin runs `traffic-center ca list` all day; through the async store it would
import SQLAlchemy and the settings first (most of its run time). When the store is
a SQLite file already at the schema's head, this module reads it with :mod:`sqlite3` instead.
In every other case (PostgreSQL, no file yet, an older or newer schema, a file it cannot open)
it answers None and the command takes the ordinary path, which creates or migrates the store.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from traffic_center.domain.models import CertificateRecord, CertificateRole
from traffic_center.store.revisions import READ_REVISIONS, VERSION_TABLE, at_head

# How long a read waits for a writer's lock before the command gives up on the quick path.
BUSY_SECONDS = 5.0

_CERTIFICATES = (
    "SELECT serial, role, routeringskenmerk, subject, not_before, not_after, revoked_at,"
    " revocation_reason FROM certificates ORDER BY issued_at"
)


def sqlite_file(url: str) -> Path | None:
    """The file of a plain SQLite URL (``sqlite[+driver]:///path``); None for anything else."""
    scheme, separator, path = url.partition(":///")
    if not separator or scheme.split("+", 1)[0] != "sqlite":
        return None
    if not path or path == ":memory:" or "?" in path:
        return None
    return Path(path)


def read_certificates(database: Path) -> list[CertificateRecord] | None:
    """The certificate inventory in issue order, or None when this path cannot answer."""
    connection = _open_read_only(database)
    if connection is None:
        return None
    try:
        if not _at_head(connection):
            return None
        return [_record(row) for row in connection.execute(_CERTIFICATES)]
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def _open_read_only(database: Path) -> sqlite3.Connection | None:
    if not database.is_file():
        return None  # the ordinary path creates it
    try:
        # mode=ro: a listing never creates, migrates or writes the store.
        uri = f"{database.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=BUSY_SECONDS)
    except sqlite3.Error:
        return None


def _at_head(connection: sqlite3.Connection) -> bool:
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ).fetchone()
    if exists is None:
        return False
    return at_head(str(row[0]) for row in connection.execute(READ_REVISIONS))


def _record(row: tuple[str, ...]) -> CertificateRecord:
    serial, role, routeringskenmerk, subject, not_before, not_after, revoked_at, reason = row
    return CertificateRecord(
        serial=serial,
        role=CertificateRole(role),
        routeringskenmerk=routeringskenmerk,
        subject=subject,
        not_before=_utc(not_before),
        not_after=_utc(not_after),
        revoked_at=_utc(revoked_at) if revoked_at is not None else None,
        revocation_reason=reason,
    )


def _utc(stored: str) -> dt.datetime:
    """SQLAlchemy keeps a SQLite datetime as ISO text in UTC (``store.schema.UtcDateTime``)."""
    value = dt.datetime.fromisoformat(stored)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
