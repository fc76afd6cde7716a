"""Opening the store for administration, with the secret that signs its audit chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from traffic_center.audit.keys import chain_secret
from traffic_center.settings import Settings
from traffic_center.store.store import Store


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The store for a command: no statement timeout. The serving node's (10 s) would fail a
    migration of a large log, or an export or a verify waiting behind one, half-way; an
    operator runs these and can interrupt them."""
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


@asynccontextmanager
async def open_signed_store(settings: Settings) -> AsyncIterator[tuple[Store, bytes]]:
    """The store and the secret that signs its audit chain, checked before anything is written:
    a wrong or missing secret stops here (AuditKeyMismatch, SecretMissing) instead of
    splitting the chain."""
    async with open_store(settings) as store:
        yield store, await chain_secret(settings.configured_secret(), settings.secret_file, store)
