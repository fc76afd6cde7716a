"""The published contracts: `openapi.yaml` and `schemas/*.json`, generated from the code.

Run ``python -m traffic_center.api.contract`` to rewrite them; a test fails when they drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from traffic_center.api import schemas
from traffic_center.api.app import create_app
from traffic_center.settings import Settings

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
    document = create_app(Settings(home=Path("/nonexistent"))).openapi()
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = schemas.Problem.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
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
    written = [root / "openapi.yaml"]
    written[0].write_text(openapi_yaml())
    schema_dir = root / "schemas"
    schema_dir.mkdir(exist_ok=True)
    for name, text in json_schemas().items():
        (schema_dir / name).write_text(text)
        written.append(schema_dir / name)
    return written


if __name__ == "__main__":
    for path in write_contracts(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(path)
