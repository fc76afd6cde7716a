"""The entry point: parse, dispatch, and turn every user mistake into one line and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from traffic_center import __version__
from traffic_center.cli import audit, ca, demo, las, registry, serve
from traffic_center.domain.errors import StoreUnavailable, TrafficCenterError
from traffic_center.server.groups import restart_with_group_policy
from traffic_center.settings import describe_validation_error

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traffic-center", description="The OSO Traffic Center and its administration."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--home", help="root of local state [TC_HOME, ./.traffic-center]")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ca.add_parser(commands)
    registry.add_parsers(commands)
    serve.add_parsers(commands)
    las.add_parsers(commands)
    demo.add_parser(commands)
    audit.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    try:
        outcome = args.handler(args)
        if inspect.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
        return int(outcome)
    except ValidationError as exc:
        return _fail(describe_validation_error(exc), EXIT_USAGE)
    except StoreUnavailable as exc:
        return _fail(exc.detail, EXIT_UNAVAILABLE)
    except TrafficCenterError as exc:
        return _fail(exc.detail, EXIT_USAGE)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f"traffic-center: error: {message}", file=sys.stderr)
    return code


def run() -> None:
    """The console script. A command serving TLS first makes sure its process started with the
    key-exchange group policy (server/groups.py), re-executing itself if not."""
    args = build_parser().parse_args()
    if getattr(args, "serves_tls", False):
        restart_with_group_policy()
    sys.exit(dispatch(args))
