"""What the store really holds, as text: for tests that prove something is NOT stored."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests.support.postgres import find_bindir
from tests.support.server import TrafficCenterUnderTest


async def dump_database(tc: TrafficCenterUnderTest) -> str:
    """The real dump: pg_dump for PostgreSQL, the raw database and WAL files for SQLite."""
    url = tc.store.database.engine.url
    if tc.store.database.dialect == "postgresql":
        dump = await asyncio.to_thread(
            subprocess.run,
            [
                str(find_bindir() / "pg_dump"),
                "-h",
                str(url.host),
                "-p",
                str(url.port),
                "-U",
                str(url.username),
                str(url.database),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "CREATE TABLE public.sessions" in dump.stdout
        return dump.stdout
    assert url.database is not None
    files = [Path(url.database), Path(url.database + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    assert b"sessions" in raw
    return raw.decode("latin-1")
