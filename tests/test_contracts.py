"""openapi.yaml and schemas/ are generated from the code; they must not drift, must be valid,
every example in them must validate, and the Traffic Center serves them and its problem pages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.support.server import TrafficCenterUnderTest
from traffic_center.api.contract import PACKAGED_CONTRACT, json_schemas, openapi_yaml
from traffic_center.api.problems import problem_pages

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "regenerate with `python -m traffic_center.api.contract`"
METHODS = ("get", "put", "post", "delete", "patch")


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return loaded


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for part in ("paths", "webhooks"):
        for path, item in doc[part].items():
            for method in METHODS:
                if method in item:
                    yield f"{method.upper()} {path}", item[method]


def test_openapi_yaml_is_generated_from_the_code() -> None:
    text = openapi_yaml()
    assert (ROOT / "openapi.yaml").read_text() == text, REGENERATE
    assert PACKAGED_CONTRACT.read_text() == text, REGENERATE


def test_json_schemas_are_generated_from_the_code() -> None:
    expected = json_schemas()
    on_disk = {p.name: p.read_text() for p in (ROOT / "schemas").glob("*.json")}
    assert on_disk == expected, REGENERATE


def test_openapi_yaml_validates_as_openapi_3() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["mutualTLS"]["type"] == "mutualTLS"


def test_every_operation_documents_its_problem_codes_on_the_one_problem_schema() -> None:
    doc = document()
    for name, operation in operations(doc):
        problems = {
            status: response
            for status, response in operation["responses"].items()
            if str(status).startswith(("4", "5"))
        }
        assert problems, f"{name} documents no problem responses"
        for status, response in problems.items():
            media = response["content"]["application/problem+json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (name, status)
            assert response["x-codes"], (name, status)
        if name.startswith("POST /v1/sessions"):
            assert "CertificaatIngetrokken" in problems["403"]["x-codes"], name
    code = doc["components"]["schemas"]["Problem"]["properties"]["code"]
    assert code["type"] == "string"
    assert "enum" not in code  # an open set: a generated client must accept a new code
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_parameters_and_headers_are_plain_strings_never_null() -> None:
    for name, operation in operations(document()):
        for parameter in operation.get("parameters", []):
            assert "anyOf" not in parameter["schema"], (name, parameter["name"])
            assert parameter["schema"].get("type") != "null", (name, parameter["name"])
        if name.startswith(("GET /v1", "POST /v1")):
            names = {p["name"] for p in operation["parameters"]}
            assert "X-Request-Id" in names, name
            for response in operation["responses"].values():
                assert response["headers"]["X-Request-Id"]["required"] is True, name


def _validator(schema: dict[str, Any], doc: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(
        {**schema, "components": doc["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _schemas_with_examples(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list) and "type" in node | {"type": 1}:
            yield node
        for value in node.values():
            yield from _schemas_with_examples(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas_with_examples(value)


def test_every_example_validates_against_its_own_schema() -> None:
    doc = document()
    checked = 0
    for schema in _schemas_with_examples(doc["components"]["schemas"]):
        bare = {k: v for k, v in schema.items() if k != "examples"}
        for example in schema["examples"]:
            _validator(bare, doc).validate(example)
            checked += 1
    for name, operation in operations(doc):
        media_types = [
            *operation.get("requestBody", {}).get("content", {}).values(),
            *(m for r in operation["responses"].values() for m in r.get("content", {}).values()),
        ]
        for media in media_types:
            schema = media["schema"]
            values = [e["value"] for e in media.get("examples", {}).values()]
            values += [media["example"]] if "example" in media else []
            if not values:
                target = schema.get("$ref", "").rsplit("/", 1)[-1]
                values = doc["components"]["schemas"].get(target, {}).get("examples", [])
            assert values, f"{name}: a body without an example"
            if all(isinstance(value, str) for value in values) and "$ref" not in schema:
                continue  # XML, YAML, Markdown: the example is text, not a JSON value
            for value in values:
                _validator(schema, doc).validate(value)
                checked += 1
    assert checked > 100


async def test_the_traffic_center_serves_its_contract_and_problem_pages(
    tc: TrafficCenterUnderTest,
) -> None:
    party = await tc.world.school("PO", register_endpoint=False)
    client = party.client()
    served = await client.get("/v1/openapi.yaml")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/yaml")
    assert served.content == (ROOT / "openapi.yaml").read_bytes()
    for code, page in problem_pages().items():
        answer = await client.get(f"/v1/problems/{code}")
        assert answer.status_code == 200, code
        assert answer.headers["content-type"].startswith("text/markdown")
        assert answer.text.startswith(f"# {code}\n")
        assert f"HTTP status {page.status}." in answer.text
    unknown = await client.get("/v1/problems/GeenBestaandeCode")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "/v1/problems/NietGevonden"
    refused = await party.client().get("/v1/whoami", headers={"X-Request-Id": "x"})
    assert refused.headers["X-Request-Id"] != "x"


async def test_moments_without_a_zone_and_bare_dates_are_refused(
    tc: TrafficCenterUnderTest,
) -> None:
    client = (await tc.world.school("PO")).client()
    for moment in ("2026-01-31T08:00:00", "2026-01-31", "1769846400"):
        answer = await client.get("/v1/audit", params={"since": moment})
        assert (answer.status_code, answer.json()["code"]) == (422, "OngeldigePeriode"), moment
    zoned = await client.get("/v1/audit", params={"since": "2026-01-31T08:00:00+01:00"})
    assert zoned.status_code == 200
    for day in ("2026-01-31T00:00:00Z", 20260131, "31-01-2026"):
        answer = await client.post(
            "/v1/sessions/0b7e8f43-2d2c-4c55-9a57-3f3a1c2b9d10/dossier",
            json={
                "routeringskenmerk": "00000007000012000001",
                "zoeksleutel": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
                "aanvraagdatum": day,
            },
        )
        assert answer.status_code == 422, day
        assert answer.json()["errors"][0]["loc"] == ["body", "aanvraagdatum"], day


async def test_fastapis_own_unfinished_schema_is_not_served(tc: TrafficCenterUnderTest) -> None:
    # The contract is openapi.yaml alone (GET /v1/openapi.yaml); FastAPI's document differed.
    client = (await tc.world.school("PO", register_endpoint=False)).client()
    answer = await client.get("/v1/openapi.json")
    assert (answer.status_code, answer.json()["code"]) == (404, "NietGevonden")


async def test_not_found_has_one_title_wherever_it_is_answered(tc: TrafficCenterUnderTest) -> None:
    client = (await tc.world.school("PO", register_endpoint=False)).client()
    no_path = await client.get("/v1/nope")
    no_code = await client.get("/v1/problems/Foo")
    page = await client.get("/v1/problems/NietGevonden")
    assert no_path.json()["code"] == no_code.json()["code"] == "NietGevonden"
    assert no_path.json()["title"] == no_code.json()["title"]
    assert no_path.json()["title"] in page.text


async def test_a_request_id_that_is_a_uuid_is_echoed_as_sent(tc: TrafficCenterUnderTest) -> None:
    client = (await tc.world.school("PO")).client()
    sent = str(uuid.uuid4()).upper()
    answer = await client.get("/v1/whoami", headers={"X-Request-Id": sent})
    assert answer.headers["X-Request-Id"] == sent
