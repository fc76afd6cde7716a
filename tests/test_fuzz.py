"""Schemathesis against the live server over mTLS: every phase, the contract's checks.

The server must answer exactly as the contract says (status, content type, headers, body),
refuse what the contract calls invalid, and never fail; bounded per operation.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.support.server import TrafficCenterUnderTest

ROOT = Path(__file__).resolve().parent.parent
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)


async def test_schemathesis_finds_no_server_error(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    party = await tc.world.school("PO")
    await tc.world.school("PO")  # a second school for sessions to be granted against
    config = tmp_path / "schemathesis.toml"
    config.write_text("[cache]\nenabled = false\n")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    process = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "--config-file",
        str(config),
        "run",
        str(ROOT / "openapi.yaml"),
        "--url",
        tc.url,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        "12",
        "--seed",
        "20261128",
        "--generation-deterministic",
        "--tls-verify",
        str(tc.ca_pem),
        "--request-cert",
        str(party.cert),
        "--request-cert-key",
        str(party.key),
        "--request-timeout",
        "10",
        "--no-color",
        cwd=tmp_path,
        env={**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / "hypothesis")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    print(output.decode(errors="replace"))
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert "Server error" not in report
    # Every generated case passed every check. (Schemathesis may still warn that some
    # operations mostly met 404s or refusals for data only a real session gives: warnings,
    # not failures; see the run's output.)
    cases = re.search(r"(\d+) generated, (\d+) passed(.*)", report)
    assert cases is not None, report
    assert cases[1] == cases[2], report
    assert "failed" not in cases[3], report
    assert int(cases[1]) > 300, "too few cases to mean anything"
    assert "Stateful" in report, report  # the phase ran
    # The contract is as strict as the server: no operation mostly refuses what the schema
    # calls valid (an unknown but well-formed endpoint is 404, missing test data).
    assert _mismatched(report) == set(), report
    assert "Schema validation mismatch" not in report, report


def _mismatched(report: str) -> set[str]:
    """The operations under Schemathesis' "Schema validation mismatch" warning."""
    found = re.search(r"Schema validation mismatch:[^\n]*\n\n((?:  - [^\n]+\n)+)", report)
    return set() if found is None else {line[4:] for line in found[1].splitlines()}
