"""Opening the store for administration, with the secret that signs its audit chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from traffic_center.audit.keys import chain_secret
from traffic_center.domain.errors import InvalidInput
from traffic_center.settings import Settings
from traffic_center.store.quick import sqlite_file
from traffic_center.store.store import Store


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@asynccontextmanager
async def open_store(settings: Settings, *, existing: bool = False) -> AsyncIterator[Store]:
    """The store for a command: no statement timeout. The serving node's (10 s) would fail a
    migration of a large log, or an export or a verify waiting behind one, half-way; an
    operator runs these and can interrupt them.

    ``existing``: a command that only reads refuses a SQLite database that is not there
    (``InvalidInput``) instead of creating an empty one: a mistyped ``--home`` or ``TC_HOME``
    showed an empty registry and left a new installation, secret and all, behind."""
    if existing:
        _refuse_missing_database(settings)
    store = await Store.open(
        settings.effective_database_url,
        migrate=settings.run_migrations,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        statement_timeout_seconds=None,
    )
    try:
        yield store
    finally:
        await store.close()


def _refuse_missing_database(settings: Settings) -> None:
    database = sqlite_file(settings.effective_database_url)
    if database is not None and not database.exists():
        raise InvalidInput(
            f"no Traffic Center database at {database}: check --home (or TC_HOME, "
            f"TC_DATABASE_URL); a command that only reads creates none"
        )


@asynccontextmanager
async def open_signed_store(
    settings: Settings, *, existing: bool = False
) -> AsyncIterator[tuple[Store, bytes]]:
    """The store and the secret that signs its audit chain, checked before anything is written:
    a wrong or missing secret stops here (AuditKeyMismatch, SecretMissing) instead of
    splitting the chain."""
    async with open_store(settings, existing=existing) as store:
        yield store, await chain_secret(settings.configured_secret(), settings.secret_file, store)
