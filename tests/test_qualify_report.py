"""The qualification report: table, JUnit and JSON say the same, and failures say why."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from traffic_center.qualify.report import Report


def test_the_report_in_every_form(tmp_path: Path) -> None:
    out = io.StringIO()
    report = Report("qualify bron https://las.example/oso", out=out)
    with report.scenario("gereed"):
        report.expect("gereed", "answers 200 application/xml", True)
    with report.scenario("nietgereed"):
        report.expect(
            "nietgereed",
            "answers 409 DossierNogNietGereed",
            False,
            expected="409 application/problem+json DossierNogNietGereed",
            got="200 text/html",
            reproduce="curl --cert relay.pem --key relay.key https://las.example/oso/dossier",
        )
    assert not report.ok
    report.write_table()
    text = out.getvalue()
    assert "… gereed" in text
    assert "nietgereed: 1 of 1 failed" in text
    assert "expected: 409 application/problem+json DossierNogNietGereed" in text
    assert "reproduce: curl --cert relay.pem" in text
    assert text.rstrip().endswith("1 passed, 1 failed")

    report.write_json(tmp_path / "r.json")
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["ok"] is False
    assert [c["passed"] for c in document["checks"]] == [True, False]

    report.write_junit(tmp_path / "r.xml")
    suites = ET.parse(tmp_path / "r.xml").getroot()
    assert [s.get("name") for s in suites] == ["gereed", "nietgereed"]
    assert suites[1].get("failures") == "1"
    failure = suites[1].find("testcase/failure")
    assert failure is not None
    assert "200 text/html" in (failure.text or "")


def test_an_empty_report_is_not_a_pass() -> None:
    assert not Report("nothing ran", out=io.StringIO()).ok
