"""The package as an operator installs it: from the lock file, without the dev extras.

A fresh virtualenv gets `requirements.lock` (hashes checked) and then the package with
``--no-deps``, as the Dockerfile and `scripts/setup` do; every module must import there and the
CLI must run, so an import of a development tool (pytest, psutil, PyYAML) or of the optional
PostgreSQL driver fails here rather than on an operator's machine. pip reads the registry and
its cache: about 15 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = ("pytest", "psutil", "yaml", "hypothesis", "stdnum", "asyncpg")

# Imports every module of the installed package; prints the ones that fail, with the error.
_IMPORT_ALL = """
import importlib, pkgutil, traffic_center
skip = {"traffic_center.__main__", "traffic_center.store.migrations.env"}  # they run on import
for module in pkgutil.walk_packages(traffic_center.__path__, "traffic_center."):
    if module.name not in skip:
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            print(module.name, type(exc).__name__, exc)
"""


def _run(*command: str | Path, **tc_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=300,
        env=env | {f"TC_{name.upper()}": value for name, value in tc_env.items()},
        check=False,
    )


def _pip(venv: Path, *args: str | Path) -> None:
    # This environment's pip installs into the fresh one: no pip bootstrap there.
    done = _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", *args)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the locked runtime and the package, and nothing else."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"  # a copy: building writes build/ next to the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "traffic_center",
        source / "traffic_center",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    venv = root / "venv"
    created = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert created.returncode == 0, created.stderr
    _pip(venv, "install", "-q", "--require-hashes", "--no-deps", "-r", ROOT / "requirements.lock")
    _pip(venv, "install", "-q", "--no-deps", source)
    return venv


def test_the_lock_satisfies_the_declared_ranges(installed: Path) -> None:
    _pip(installed, "check")


def test_every_module_imports_without_the_dev_extras(installed: Path) -> None:
    python = installed / "bin" / "python"
    found = f"import importlib.util as u; print([m for m in {DEV_ONLY!r} if u.find_spec(m)])"
    absent = _run(python, "-c", found)
    assert absent.stdout.strip() == "[]", "a development package is in the runtime lock"
    failures = _run(python, "-c", _IMPORT_ALL)
    assert failures.returncode == 0, failures.stderr
    assert failures.stdout == ""


def test_the_cli_runs_and_keeps_a_sqlite_store_without_asyncpg(
    installed: Path, tmp_path: Path
) -> None:
    command = installed / "bin" / "traffic-center"
    for args in (["--help"], ["ca", "--help"]):
        done = _run(command, *args)
        assert done.returncode == 0, done.stderr
        assert "usage: traffic-center" in done.stdout
    home = ["--home", str(tmp_path / "home")]
    assert _run(command, *home, "ca", "init").returncode == 0
    listed = _run(command, *home, "ca", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"


def _pins(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), flags=re.M))


def test_the_postgres_lock_is_the_runtime_lock_plus_the_driver() -> None:
    runtime = _pins(ROOT / "requirements.lock")
    postgres = _pins(ROOT / "requirements-postgres.lock")
    assert set(postgres) - set(runtime) == {"asyncpg"}
    assert {name: postgres[name] for name in runtime} == runtime


def test_a_postgresql_url_without_the_extra_is_one_clear_line(
    installed: Path, tmp_path: Path
) -> None:
    url = "postgresql+asyncpg://tc@127.0.0.1:1/tc"
    done = _run(
        installed / "bin" / "traffic-center", "db", "upgrade", home=str(tmp_path), database_url=url
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "traffic-center: error: the database driver 'asyncpg' is not installed"
        " (for PostgreSQL: pip install 'traffic-center[postgres]')"
    ]
