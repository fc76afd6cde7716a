"""`traffic-center demo`: the whole product in one command, leaving nothing running."""

from __future__ import annotations

import argparse

from traffic_center.demo.run import run_demo


async def demo_command(args: argparse.Namespace) -> int:
    return await run_demo(keep=args.keep)
