"""What a command prints: one-line messages on stderr, records as a table or JSON on stdout.

Standard library only, so a command that must start fast (`ca list`) can print without
loading the settings or the store.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any


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
