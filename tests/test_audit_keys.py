"""The secret cannot split the chain: a wrong, missing or weak secret writes nothing (exit 2),
and a rotation is an audited hand-over that `audit verify` follows."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, DatabaseFactory
from tests.support.processes import clean_env
from tests.test_audit import SECRET, _filled_store
from traffic_center.domain.audit import KEY_ID_LABEL, AuditType, key_id
from traffic_center.store.store import Store

RECORDS = 5


def cli(
    url: str, home: Path, *args: str, secret: str | None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**clean_env(), "TC_DATABASE_URL": url, "TC_HOME": str(home), **env}
    if secret is not None:
        environment["TC_SECRET_KEY"] = secret
    return subprocess.run(
        [sys.executable, "-m", "traffic_center", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


async def count(url: str) -> int:
    store = await Store.open(url)
    try:
        return (await store.audit.head()).count
    finally:
        await store.close()


def one_line_exit_2(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


ADD_SCHOOL = ("school", "add", "--brin", "77ZZ", "--name", "Nieuwe School", "--sector", "PO")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_missing_or_wrong_secret_writes_nothing(
    database_factory: DatabaseFactory, tmp_path: Path, backend: str
) -> None:
    url = await database_factory(backend)
    await (await _filled_store(url, RECORDS)).close()
    home = tmp_path / "home"

    missing = cli(url, home, *ADD_SCHOOL, secret=None)
    one_line_exit_2(missing, "TC_SECRET_KEY", f"{RECORDS} records")
    assert not (home / "secret.key").exists(), "a new secret was made for a log with records"

    wrong = cli(url, home, *ADD_SCHOOL, secret=secrets.token_hex(32))
    one_line_exit_2(wrong, "key id", key_id(SECRET.encode()))

    assert await count(url) == RECORDS
    listed = cli(url, home, "school", "list", "--json", secret=SECRET)
    assert listed.returncode == 0, listed.stderr
    assert "77ZZ" not in listed.stdout
    verified = cli(url, home, "audit", "verify", secret=SECRET)
    assert (verified.returncode, verified.stdout.strip()) == (0, f"OK {RECORDS} records")


@pytest.mark.parametrize(
    "weak", ["short", "a" * 80, "0123456789abcdef" * 3, "correct horse battery staple"]
)
def test_a_weak_secret_is_refused(tmp_path: Path, weak: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tc.db'}"
    done = cli(url, tmp_path / "home", *ADD_SCHOOL, secret=weak)
    one_line_exit_2(done, "TC_SECRET_KEY")
    assert not (tmp_path / "tc.db").exists(), "the store was opened before the secret was checked"


def test_strong_secrets_in_both_documented_forms_are_accepted(tmp_path: Path) -> None:
    for number, strong in enumerate((secrets.token_hex(32), secrets.token_urlsafe(32))):
        url = f"sqlite+aiosqlite:///{tmp_path / f'tc-{number}.db'}"
        done = cli(url, tmp_path / f"home-{number}", *ADD_SCHOOL, secret=strong)
        assert done.returncode == 0, done.stderr


async def test_a_rotation_hands_the_chain_to_the_new_key(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    url = await database_factory("sqlite")
    await (await _filled_store(url, RECORDS)).close()
    home = tmp_path / "home"
    new = secrets.token_hex(32)
    new_file = tmp_path / "new.key"
    new_file.write_text(new + "\n")

    rotated = cli(url, home, "audit", "rotate-key", "--new-key-file", str(new_file), secret=SECRET)
    assert rotated.returncode == 0, rotated.stderr
    assert key_id(new.encode()) in rotated.stderr

    one_line_exit_2(cli(url, home, *ADD_SCHOOL, secret=SECRET), key_id(new.encode()))
    assert cli(url, home, *ADD_SCHOOL, secret=new).returncode == 0

    # The records before the rotation need the old key: named, not called tampering.
    alone = cli(url, home, "audit", "verify", secret=new)
    assert alone.returncode == 1
    assert "TC_PREVIOUS_SECRET_KEYS" in alone.stdout
    both = cli(url, home, "audit", "verify", secret=new, TC_PREVIOUS_SECRET_KEYS=SECRET)
    # The filled records, the rotation, the school added.
    assert (both.returncode, both.stdout.strip()) == (0, f"OK {RECORDS + 2} records")

    store = await Store.open(url)
    try:
        rotation = [r.record async for r in store.audit.walk()][RECORDS]
    finally:
        await store.close()
    assert rotation.type is AuditType.KEY_ROTATED
    assert (rotation.key_id, rotation.subject) == (key_id(SECRET.encode()), key_id(new.encode()))


def test_the_key_id_names_a_key_without_revealing_it() -> None:
    one, other = secrets.token_hex(32).encode(), secrets.token_hex(32).encode()
    assert key_id(one) == key_id(one)
    assert key_id(one) != key_id(other)
    assert len(key_id(one)) == 16
    assert key_id(one) not in one.decode()
    assert KEY_ID_LABEL  # a fixed label: ids stay stable across releases
