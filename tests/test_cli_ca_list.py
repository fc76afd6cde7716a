"""`ca list` reads a SQLite store at head without the settings, SQLAlchemy, Alembic or
cryptography, and says exactly what the ordinary path says; a store open at head skips Alembic.

Speed itself is measured in bench/cli_startup.py; here only what makes it fast is held.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import clean_env
from tests.test_cli import register
from traffic_center.cli import ca_list
from traffic_center.cli.context import settings_from
from traffic_center.cli.main import main
from traffic_center.store.migrate import alembic_config
from traffic_center.store.quick import read_certificates, sqlite_file
from traffic_center.store.revisions import head_revisions

HEAVY = ("sqlalchemy", "alembic", "aiosqlite", "pydantic", "pydantic_settings", "cryptography")

_LIST_AND_REPORT = """
import json, sys
from traffic_center.cli.main import main
code = main(["--home", sys.argv[1], "ca", "list", "--json"])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(",")))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""

_OPEN_AND_REPORT = """
import asyncio, json, sys
from traffic_center.store.store import Store

async def open_and_close():
    store = await Store.open(sys.argv[1])
    await store.close()

asyncio.run(open_and_close())
print(json.dumps("alembic" in sys.modules))
"""


@pytest.fixture
def populated(home: Path) -> Path:
    """A CA, two certificates (one revoked) in a store the ordinary path created."""
    assert main(["--home", str(home), "ca", "init"]) == 0
    register(home, "00000007000012000001", "00000007000034000001")
    for n, routeringskenmerk in enumerate(("00000007000012000001", "00000007000034000001")):
        issue = ["ca", "issue", "--routeringskenmerk", routeringskenmerk, "--brin", "12AB"]
        out = str(home / f"school-{n}")
        assert main(["--home", str(home), *issue, "--name", "X", "--out", out]) == 0
    issued = read_certificates(home / "traffic-center.db")
    assert issued is not None
    assert len(issued) == 2
    assert main(["--home", str(home), "ca", "revoke", issued[0].serial]) == 0
    return home


def _in_a_fresh_interpreter(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter: this test process has long imported everything.
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=True,
    )


def test_listing_a_store_at_head_loads_nothing_heavy(populated: Path) -> None:
    ran = _in_a_fresh_interpreter(_LIST_AND_REPORT, str(populated), ",".join(HEAVY))
    report = json.loads(ran.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}
    listed = json.loads(ran.stdout)
    assert [c["status"] for c in listed] == ["revoked", "valid"]


def test_the_quick_listing_says_what_the_store_says(populated: Path) -> None:
    args = argparse.Namespace(home=str(populated), json=True)
    quick = ca_list._quickly(args)
    assert quick is not None
    assert list(quick) == list(ca_list._from_store(args))
    assert quick[0][0].revocation_reason == "unspecified"


def test_opening_a_store_at_head_does_not_import_alembic(populated: Path) -> None:
    url = f"sqlite+aiosqlite:///{populated / 'traffic-center.db'}"
    assert json.loads(_in_a_fresh_interpreter(_OPEN_AND_REPORT, url).stdout) is False
    fresh = f"sqlite+aiosqlite:///{populated / 'fresh.db'}"
    assert json.loads(_in_a_fresh_interpreter(_OPEN_AND_REPORT, fresh).stdout) is True


def test_a_store_behind_head_or_missing_takes_the_ordinary_path(populated: Path) -> None:
    database = populated / "traffic-center.db"
    assert read_certificates(populated / "nothing-here.db") is None
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    assert read_certificates(database) is None
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE alembic_version")
    assert read_certificates(database) is None


def test_the_head_known_without_alembic_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    assert head_revisions() == frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite+aiosqlite:////abs/tc.db", Path("/abs/tc.db")),
        ("sqlite:///relative/tc.db", Path("relative/tc.db")),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite:////abs/tc.db?mode=ro", None),
        ("postgresql+asyncpg://tc@db/tc", None),
    ],
)
def test_only_a_plain_sqlite_file_is_read_quickly(url: str, file: Path | None) -> None:
    assert sqlite_file(url) == file


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        (None, {}),
        ("~/tc-home", {}),
        (None, {"TC_HOME": "/srv/tc"}),
        ("/flag/wins", {"TC_HOME": "/srv/tc"}),
        (None, {"TC_DATABASE_URL": "sqlite+aiosqlite:////data/elsewhere.db"}),
        (None, {"TC_DATABASE_URL": "postgresql+asyncpg://tc@db/tc", "TC_HOME": "/srv/tc"}),
    ],
)
def test_the_quick_path_finds_the_store_where_the_settings_put_it(
    monkeypatch: pytest.MonkeyPatch, flag: str | None, env: dict[str, str]
) -> None:
    for name in ("TC_HOME", "TC_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = argparse.Namespace(home=flag)
    assert ca_list.database_url(args) == settings_from(args).effective_database_url
