"""The published contracts: `openapi.yaml` and `schemas/*.json`, generated from the code.

Run ``python -m traffic_center.api.contract`` to rewrite them; a test fails when they drift.
The document is FastAPI's, finished here by rules that hold for every route (so a new route
is covered without naming it): operation ids are the handlers' names, optional parameters and
headers are plain strings (never string-or-null: nothing on the wire is null), every operation
takes and answers `X-Request-Id`, and every error is the one shared `Problem`.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from traffic_center.api import schemas
from traffic_center.api.app import create_app
from traffic_center.api.problems import problem_body, status_for
from traffic_center.api.responses import PROBLEM_REF, problem_responses
from traffic_center.domain.errors import AuditUnavailable, InvalidInput, RequestTooLarge
from traffic_center.domain.las_contract import PROBLEM_MEDIA_TYPE, TRANSACTION_HEADER
from traffic_center.observability.context import REQUEST_ID_HEADER
from traffic_center.settings import Settings

# The served copy (GET /v1/openapi.yaml, api/routes/docs.py) is package data beside this module.
PACKAGED_CONTRACT = Path(__file__).with_name("openapi.yaml")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_REQUEST_ID_IN = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    "description": (
        "your id for this request, echoed in the answer, the logs and the audit record; kept "
        "only when it is a UUID (anything else is replaced by one of ours, never refused)"
    ),
    "schema": {"type": "string", "examples": ["9a1f3a52-1c0e-4a51-8f0e-2f7a0b1c2d3e"]},
}
_REQUEST_ID_OUT = {
    "description": "the request's id: yours if it was a UUID, else ours",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
# FastAPI's own validation error shapes: the Traffic Center (and the reference LAS) answer a
# Problem instead (api/problems.handle_validation_error).
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_INVALID_INPUT = problem_body(422, InvalidInput)
_TRANSACTION_ID_OUT = {
    "description": "this exchange's id, the key of its audit record: quote it with X-Request-Id",
    "schema": {"type": "string", "format": "uuid"},
}
# The request guard answers a body over TC_MAX_REQUEST_BODY_BYTES before any route reads it
# (api/guard.py), so every operation that takes a body can answer it.
_TOO_LARGE = {
    str(status): answer
    for status, answer in problem_responses(RequestTooLarge).items()
    if status == status_for(RequestTooLarge)
}

BODY_MODELS: tuple[type[BaseModel], ...] = (
    schemas.SessionCreate,
    schemas.SessionGranted,
    schemas.SessionCheckBody,
    schemas.SessionValid,
    schemas.SessionCloseBody,
    schemas.SessionClosed,
    schemas.EndpointList,
    schemas.WhoAmI,
    schemas.DossierRequestBody,
    schemas.NotificationBody,
    schemas.SwvNotificationBody,
    schemas.SwvNotificationDelivered,
    schemas.FeedbackBody,
    schemas.FeedbackDelivered,
    schemas.NotificationDelivered,
    schemas.LasDossierRequest,
    schemas.LasNotification,
    schemas.LasNotificationAnswer,
    schemas.LasFeedback,
    schemas.LasFeedbackAnswer,
    schemas.AuditPage,
    schemas.Problem,
)


def openapi_document() -> dict[str, Any]:
    # The app is only described, never started: no store is opened.
    document = copy.deepcopy(create_app(Settings(home=Path("/nonexistent"))).openapi())
    _name_operations(document)
    _add_models(document)
    for _path, _method, operation in _operations(document, "paths"):
        _finish_parameters(operation)
        operation.setdefault("parameters", []).append(dict(_REQUEST_ID_IN))
        if "requestBody" in operation:
            operation["responses"].update(copy.deepcopy(_TOO_LARGE))
        for response in operation["responses"].values():
            response.setdefault("headers", {})[REQUEST_ID_HEADER] = dict(_REQUEST_ID_OUT)
        _declare_transaction_id(operation)
    for _path, _method, operation in _operations(document, "webhooks"):
        _finish_parameters(operation)
    _problems_not_fastapi_errors(document)
    components = document["components"]
    components["securitySchemes"] = {
        "mutualTLS": {
            "type": "mutualTLS",
            "description": (
                "A client certificate issued by the Traffic Center's CA: subject serialNumber is "
                "the endpoint's 20-digit routeringskenmerk; EKU clientAuth only."
            ),
        }
    }
    document["security"] = [{"mutualTLS": []}]
    document["servers"] = [{"url": "https://traffic-center.example", "description": "mTLS"}]
    return document


def _operations(document: dict[str, Any], part: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get(part, {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _name_operations(document: dict[str, Any]) -> None:
    """operationId = the handler's name: what a generated client calls the function.

    FastAPI's default id is name + path (non-word characters as `_`) + `_` + method; the
    suffix is cut off again, so every route, whoever adds it, is named the same way.
    """
    seen: set[str] = set()
    for part in ("paths", "webhooks"):
        for path, method, operation in _operations(document, part):
            suffix = re.sub(r"\W", "_", path) + "_" + method
            name = operation["operationId"].removesuffix(suffix)
            assert name != operation["operationId"], f"{name}: not FastAPI's default id"
            assert name not in seen, f"two operations named {name}"
            seen.add(name)
            operation["operationId"] = name


def _add_models(document: dict[str, Any]) -> None:
    """Every published body, and what it refers to, under components/schemas."""
    _, found = models_json_schema(
        [(model, "serialization") for model in BODY_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(found["$defs"])


def _finish_parameters(operation: dict[str, Any]) -> None:
    """An optional parameter is absent or a string, never null: drop FastAPI's anyOf-null."""
    for parameter in operation.get("parameters", []):
        schema = parameter["schema"]
        variants = schema.get("anyOf", [])
        if len(variants) == 2 and {"type": "null"} in variants:
            (kept,) = (v for v in variants if v != {"type": "null"})
            schema.pop("anyOf")
            parameter["schema"] = {**kept, **schema}
        parameter["schema"].pop("title", None)


def _declare_transaction_id(operation: dict[str, Any]) -> None:
    """`X-OSO-Transactie-Id` where it is sent: on every answer of an exchange, the key of its
    audit record. An exchange is an operation refused when it cannot be recorded (fail closed:
    it lists AuditNietBeschikbaar), so a new one is covered without naming it. A problem answer
    carries it whenever the refusal was recorded (a refused certificate is, on any operation;
    a refusal before the exchange began, such as a malformed body, is not), so there optional."""
    answers = operation["responses"]
    exchange = any(
        AuditUnavailable.code in answer.get("x-codes", ()) for answer in answers.values()
    )
    for status, answer in answers.items():
        problem = str(status).startswith(("4", "5"))
        if problem or exchange:
            headers = answer.setdefault("headers", {})
            headers.setdefault(TRANSACTION_HEADER, {**_TRANSACTION_ID_OUT, "required": not problem})


def _problems_not_fastapi_errors(document: dict[str, Any]) -> None:
    for part in ("paths", "webhooks"):
        for _path, _method, operation in _operations(document, part):
            answer = operation["responses"].get("422")
            if answer is not None and "application/json" in answer.get("content", {}):
                operation["responses"]["422"] = {
                    "description": f"Problem; `code` is {InvalidInput.code}",
                    "x-codes": [InvalidInput.code],
                    "content": {
                        PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF, "example": _INVALID_INPUT}
                    },
                    **({"headers": answer["headers"]} if "headers" in answer else {}),
                }
    for name in _FASTAPI_VALIDATION:
        document["components"]["schemas"].pop(name, None)


def openapi_yaml() -> str:
    # PyYAML is a development dependency: only writing (or checking) the contract needs it.
    import yaml

    return yaml.safe_dump(openapi_document(), sort_keys=False, allow_unicode=True, width=100)


def json_schemas() -> dict[str, str]:
    return {
        f"{model.__name__}.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True)
        + "\n"
        for model in BODY_MODELS
    }


def write_contracts(root: Path) -> list[Path]:
    text = openapi_yaml()
    written = [root / "openapi.yaml", PACKAGED_CONTRACT]
    for path in written:
        path.write_text(text)
    schema_dir = root / "schemas"
    schema_dir.mkdir(exist_ok=True)
    for name, text in json_schemas().items():
        (schema_dir / name).write_text(text)
        written.append(schema_dir / name)
    return written


if __name__ == "__main__":
    for path in write_contracts(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(path)
