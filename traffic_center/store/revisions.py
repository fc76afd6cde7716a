"""The schema revision the code expects, known without importing Alembic.

Alembic's import and its environment cost a CLI command more than the command itself, and
almost every time the database is already at head. So a store open first compares the
revisions in ``alembic_version`` with the head read here from the migration files' own
``revision``/``down_revision`` lines, and runs Alembic only when they differ.
``tests/test_store_revisions.py`` holds this reading to Alembic's own answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"
VERSION_TABLE = "alembic_version"
READ_REVISIONS = "SELECT version_num FROM alembic_version"

_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*=\s*(.+?)\s*$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


@functools.cache
def head_revisions() -> frozenset[str]:
    """Every revision no other revision names as its ``down_revision`` (normally one)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        found = dict(_ASSIGNMENT.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue  # not a migration (__init__.py)
        revisions.update(_QUOTED.findall(found["revision"]))
        parents.update(_QUOTED.findall(found.get("down_revision", "None")))
    return frozenset(revisions - parents)


def at_head(current: Iterable[str]) -> bool:
    """Whether the revisions a database records are exactly the code's head(s)."""
    return frozenset(current) == head_revisions()
