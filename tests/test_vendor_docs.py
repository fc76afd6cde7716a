"""The vendor guide and its Bruno collection stay true to the contract they describe."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BRUNO = ROOT / "docs" / "bruno"
REQUEST_LINE = re.compile(
    r"^(get|post|put|delete|patch) \{\n\s+url: \{\{baseUrl\}\}([^?\s]+)", re.M
)
BODY = re.compile(r"^body:json \{\n(.*?)\n\}", re.M | re.S)
# Bruno's {{variables}} in a path, and the OpenAPI parameter each stands for.
PATH_VARIABLES = {"{{sessieId}}": "{sessie_id}"}


def contract() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return loaded


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


REQUESTS = sorted(BRUNO.glob("*.bru"))


def test_the_collection_covers_every_vendor_operation() -> None:
    covered = set()
    for path in REQUESTS:
        found = REQUEST_LINE.search(path.read_text())
        assert found, f"{path.name}: no request line"
        covered.add((found.group(1), _template(found.group(2))))
    operations = {
        (method, route)
        for route, item in contract()["paths"].items()
        for method in item
        if route.startswith("/v1/") and method in {"get", "post"}
    }
    documentation = {op for op in operations if op[1].startswith(("/v1/openapi", "/v1/problems"))}
    assert operations - documentation <= covered, "add a .bru file for the new operation"


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.name)
def test_each_request_matches_the_contract(request_file: Path) -> None:
    text = request_file.read_text()
    found = REQUEST_LINE.search(text)
    assert found
    method, route = found.group(1), _template(found.group(2))
    spec = contract()
    operation = spec["paths"].get(route, {}).get(method)
    assert operation is not None, (
        f"{request_file.name}: {method.upper()} {route} is not in the contract"
    )
    body = BODY.search(text)
    if body is None:
        assert "requestBody" not in operation or not operation["requestBody"].get("required")
        return
    sent = json.loads(re.sub(r"\{\{\w+\}\}", "x", body.group(1)))
    schema = resolve(spec, operation["requestBody"]["content"]["application/json"]["schema"])
    # A oneOf body (zoeksleutel or koppelsleutel): the request must fit one of its shapes.
    shapes = [resolve(spec, s) for s in schema.get("oneOf", [schema])]
    assert any(
        set(sent) <= set(shape["properties"]) and set(shape.get("required", [])) <= set(sent)
        for shape in shapes
    ), f"{request_file.name}: no shape of the body fits {sorted(sent)}"


def test_the_guide_links_to_files_that_exist() -> None:
    guide = ROOT / "docs" / "vendors.md"
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", guide.read_text()):
        assert (guide.parent / target).exists(), f"docs/vendors.md links to a missing {target}"


def _template(route: str) -> str:
    for variable, parameter in PATH_VARIABLES.items():
        route = route.replace(variable, parameter)
    return route
