"""The CLI starts light: building the parser loads no web framework, database or HTTP client."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from tests.support.processes import clean_env
from traffic_center.cli.main import build_parser, load_handler
from traffic_center.domain.models import REVOCATION_REASON_NAMES
from traffic_center.pki.ca import REVOCATION_REASONS

# What a certificate admin's `traffic-center ca --help` must not pay for (issue 15: ~1 s).
HEAVY = ("fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "httpx", "cryptography")

_PROBE = """
import json, sys
from traffic_center.cli.main import build_parser
build_parser()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def _modules_loaded_by_building_the_parser() -> list[str]:
    # A fresh interpreter: this test process has long imported everything.
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=set(HEAVY))],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=True,
    )
    loaded: list[str] = json.loads(probe.stdout)
    return loaded


def test_building_the_parser_loads_nothing_heavy() -> None:
    assert _modules_loaded_by_building_the_parser() == []


def _handlers(parser: argparse.ArgumentParser, path: str = "") -> dict[str, str]:
    """Every leaf command (`ca list`, …) and the handler it names."""
    found: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_handlers(sub, f"{path} {name}".strip()))
    if not found and parser.get_default("handler") is not None:
        found[path] = parser.get_default("handler")
    return found


def test_every_command_names_a_handler_that_exists() -> None:
    handlers = _handlers(build_parser())
    assert {"ca list", "school add", "serve", "db upgrade", "las serve", "demo"} <= set(handlers)
    assert "audit verify" in handlers
    for command, target in handlers.items():
        assert callable(load_handler(target)), f"`{command}` names {target}, not a function"


@pytest.mark.parametrize("command", [[], ["ca"], ["school"], ["audit"]])
def test_a_missing_command_is_a_usage_error(command: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(command)
    assert exit_.value.code == 2


def test_the_offered_revocation_reasons_are_the_cas() -> None:
    assert set(REVOCATION_REASON_NAMES) == set(REVOCATION_REASONS)
