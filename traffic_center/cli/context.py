"""What every command shares: settings from flags and env, the store, the clock, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from traffic_center.admin.store import open_signed_store, open_store, utc_now
from traffic_center.settings import Settings

__all__ = ["open_signed_store", "open_store", "say", "settings_from", "show_records", "utc_now"]


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Flags win over TC_* variables; only flags the user gave are passed."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "home", None) is not None:
        given["home"] = Path(args.home)
    return Settings(**given)


def say(message: str) -> None:
    print(message, file=sys.stderr)


def show_records(
    rows: Sequence[Mapping[str, Any]], *, as_json: bool, columns: Sequence[tuple[str, str]]
) -> None:
    """`--json`: the rows as a JSON array; otherwise a table of the (HEADER, key) columns."""
    if as_json:
        print(json.dumps(list(rows), indent=2, default=str))
        return
    table = [[header for header, _ in columns]]
    table += [[_cell(row[key]) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
