"""The entry point: parse, dispatch, and turn every user mistake into one line and exit 2.

Only the parser is built at start (:mod:`traffic_center.cli.commands`, standard library only);
the chosen command's module is imported when it runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from traffic_center import __version__
from traffic_center.cli.commands import add_all
from traffic_center.domain.errors import AuditKeyMismatch, StoreUnavailable, TrafficCenterError

if TYPE_CHECKING:
    from pydantic import ValidationError

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1

# A command's handler: synchronous, or a coroutine the CLI runs in a fresh event loop.
Handler = Callable[[argparse.Namespace], int | Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traffic-center", description="The OSO Traffic Center and its administration."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--home", help="root of local state [TC_HOME, ./.traffic-center]")
    add_all(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def load_handler(target: str) -> Handler:
    """``"module:function"`` → the function, importing its module now."""
    module, _, name = target.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    try:
        outcome = load_handler(args.handler)(args)
        return _complete(outcome) if isinstance(outcome, Coroutine) else int(outcome)
    except AuditKeyMismatch as exc:  # the admin's secret is wrong: a usage error, not an outage
        return _fail(exc.detail, EXIT_USAGE)
    except StoreUnavailable as exc:
        return _fail(exc.detail, EXIT_UNAVAILABLE)
    except TrafficCenterError as exc:
        return _fail(exc.detail, EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _invalid_settings(exc):
            raise
        from traffic_center.settings import describe_validation_error

        return _fail(describe_validation_error(exc), EXIT_USAGE)


def _complete(outcome: Coroutine[Any, Any, int]) -> int:
    # asyncio loads with a command that needs it, not with the parser or a quick command.
    import asyncio

    return asyncio.run(outcome)


def _invalid_settings(exc: Exception) -> TypeGuard[ValidationError]:
    """Settings that do not validate. Looked up, not imported: a command that never loaded
    pydantic (`ca list`, `--help`) cannot have raised its error, and should not pay for it."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


def _fail(message: str, code: int) -> int:
    print(f"traffic-center: error: {message}", file=sys.stderr)
    return code


def run() -> None:
    """The console script. A command serving TLS first makes sure its process started with the
    key-exchange group policy (server/groups.py), re-executing itself if not."""
    args = build_parser().parse_args()
    if getattr(args, "serves_tls", False):
        from traffic_center.server.groups import restart_with_group_policy

        restart_with_group_policy()
    sys.exit(dispatch(args))
