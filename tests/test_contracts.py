"""openapi.yaml and schemas/ are generated from the code; they must not drift and must be valid."""

from __future__ import annotations

from pathlib import Path

import yaml
from openapi_spec_validator import validate

from traffic_center.api.contract import json_schemas, openapi_yaml

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "regenerate with `python -m traffic_center.api.contract`"


def test_openapi_yaml_is_generated_from_the_code() -> None:
    assert (ROOT / "openapi.yaml").read_text() == openapi_yaml(), REGENERATE


def test_json_schemas_are_generated_from_the_code() -> None:
    expected = json_schemas()
    on_disk = {p.name: p.read_text() for p in (ROOT / "schemas").glob("*.json")}
    assert on_disk == expected, REGENERATE


def test_openapi_yaml_validates_as_openapi_3() -> None:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    validate(document)
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["mutualTLS"]["type"] == "mutualTLS"


def test_every_operation_documents_its_problem_codes() -> None:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            problems = [
                response
                for status, response in operation["responses"].items()
                if str(status).startswith(("4", "5"))
                and "application/problem+json" in response.get("content", {})
            ]
            assert problems, f"{method.upper()} {path} documents no problem responses"
            assert any("CertificaatIngetrokken" in r["description"] for r in problems), (
                f"{method.upper()} {path} does not document certificate refusals"
            )
