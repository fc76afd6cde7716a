"""`traffic-center qualify doel`: a sandbox, what the vendor's doel must fetch, the verdict."""

from __future__ import annotations

import argparse
import sys

from traffic_center.cli.sandbox import running_sandbox
from traffic_center.qualify.doel import qualify_doel
from traffic_center.qualify.report import Report, check_report_files
from traffic_center.qualify.sandbox import describe


async def doel_command(args: argparse.Namespace) -> int:
    check_report_files(("--junit", args.junit), ("--json", args.json))
    report = Report("qualify doel", out=sys.stderr)
    # The doel must meet a 429 and retry it properly: the sandbox's sessions are limited.
    async with running_sandbox(args.sandbox_home, port=args.port, limit_sessions=True) as sandbox:
        sys.stderr.write(describe(sandbox))
        sys.stderr.write(f"Waiting up to {args.wait:.0f} s for your doel to do all of it…\n")
        await qualify_doel(sandbox, report, wait_seconds=args.wait)
    report.write_table(sys.stdout)  # progress on stderr, the verdict on stdout, as for bron
    if args.junit is not None:
        report.write_junit(args.junit)
    if args.json is not None:
        report.write_json(args.json)
    return 0 if report.ok else 1
