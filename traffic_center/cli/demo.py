"""`traffic-center demo`: the whole product in one command, leaving nothing running."""

from __future__ import annotations

import argparse

from traffic_center.demo.run import run_demo


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="a Traffic Center and two reference LAS processes doing real transfers over mTLS",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (certificates, logs)"
    )
    demo.set_defaults(handler=demo_command)


async def demo_command(args: argparse.Namespace) -> int:
    return await run_demo(keep=args.keep)
