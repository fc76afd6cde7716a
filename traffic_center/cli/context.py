"""What every command shares: settings from flags and env, the store, the clock, output."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from traffic_center.settings import Settings
from traffic_center.store.store import Store


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Flags win over TC_* variables; only flags the user gave are passed."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "home", None) is not None:
        given["home"] = Path(args.home)
    return Settings(**given)


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    store = await Store.open(settings.effective_database_url, migrate=settings.run_migrations)
    try:
        yield store
    finally:
        await store.close()


def say(message: str) -> None:
    print(message, file=sys.stderr)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
