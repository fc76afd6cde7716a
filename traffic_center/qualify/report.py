"""The qualification report people read: a progress line per scenario while it runs, a
table at the end, and the same results as JUnit XML and JSON for a vendor's CI.

Every failed check says what was expected, what came back, and how to reproduce it (a curl
command line). The exit status is 0 only when every check passed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from traffic_center.domain.errors import InvalidInput


def check_report_files(*flags: tuple[str, Path | None]) -> None:
    """(flag, path) pairs of --junit/--json: one that cannot be written is a usage mistake,
    said before a run of minutes rather than as a traceback after it."""
    for flag, path in flags:
        if path is None:
            continue
        if path.is_dir():
            raise InvalidInput(f"{flag} {path}: a directory; give a file name")
        if not path.parent.is_dir():
            raise InvalidInput(f"{flag} {path}: no such directory {path.parent}")
        if not os.access(path.parent, os.W_OK):
            raise InvalidInput(f"{flag} {path}: cannot write in {path.parent}")


@dataclass(frozen=True, slots=True)
class Check:
    """One judged expectation of one scenario."""

    scenario: str
    name: str
    passed: bool
    expected: str = ""
    got: str = ""
    reproduce: str | None = None  # a curl command line (or the steps) that shows the same
    seconds: float = 0.0


@dataclass
class Report:
    title: str
    out: TextIO = field(default_factory=lambda: sys.stderr)
    checks: list[Check] = field(default_factory=list)
    # What the failures together point at, when one cause explains many (the table's end).
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    @contextmanager
    def scenario(self, name: str) -> Iterator[None]:
        """A progress line when a scenario starts and when it ends, with its verdict."""
        started, before = time.monotonic(), len(self.checks)
        self.out.write(f"… {name}\n")
        self.out.flush()
        try:
            yield
        finally:
            mine = self.checks[before:]
            bad = sum(1 for check in mine if not check.passed)
            verdict = "ok" if mine and not bad else f"{bad} of {len(mine)} failed"
            self.out.write(f"  {name}: {verdict} ({time.monotonic() - started:.1f} s)\n")
            self.out.flush()

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def expect(
        self,
        scenario: str,
        name: str,
        passed: bool,
        *,
        expected: str = "",
        got: str = "",
        reproduce: str | None = None,
    ) -> bool:
        """Record a check; returns whether it passed, so callers can stop a scenario early."""
        self.add(Check(scenario, name, passed, expected, got, reproduce))
        return passed

    # --- writing ---------------------------------------------------------------------------

    def write_table(self, out: TextIO | None = None) -> None:
        target = out or self.out
        rows = [("scenario", "check", "result")]
        rows += [(c.scenario, c.name, "PASS" if c.passed else "FAIL") for c in self.checks]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        target.write(f"\n{self.title}\n")
        for row in rows:
            target.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            target.write("\n")
        for check in self.failed:
            target.write(f"\nFAIL {check.scenario}: {check.name}\n")
            target.write(f"  expected: {check.expected}\n  got:      {check.got}\n")
            if check.reproduce:
                target.write(f"  reproduce: {check.reproduce}\n")
        for hint in self.hints:
            target.write(f"\nhint: {hint}\n")
        passed = len(self.checks) - len(self.failed)
        target.write(f"\n{passed} passed, {len(self.failed)} failed\n")

    def write_json(self, path: Path) -> None:
        document = {
            "title": self.title,
            "ok": self.ok,
            "checks": [asdict(check) for check in self.checks],
            "hints": self.hints,
        }
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    def write_junit(self, path: Path) -> None:
        """JUnit XML: one testsuite per scenario, one testcase per check."""
        suites = ET.Element("testsuites", name=self.title)
        by_scenario: dict[str, list[Check]] = {}
        for check in self.checks:
            by_scenario.setdefault(check.scenario, []).append(check)
        for scenario, checks in by_scenario.items():
            failures = sum(1 for check in checks if not check.passed)
            suite = ET.SubElement(
                suites,
                "testsuite",
                name=scenario,
                tests=str(len(checks)),
                failures=str(failures),
            )
            for check in checks:
                case = ET.SubElement(
                    suite,
                    "testcase",
                    classname=scenario,
                    name=check.name,
                    time=f"{check.seconds:.3f}",
                )
                if not check.passed:
                    failure = ET.SubElement(case, "failure", message=check.name)
                    failure.text = (
                        f"expected: {check.expected}\ngot: {check.got}\n"
                        f"reproduce: {check.reproduce or '-'}"
                    )
        ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
