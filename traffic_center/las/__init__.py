"""The reference LAS: a school's endpoint as the Traffic Center calls it, and a doel client.

Used by the demo, the tests and LAS vendors as a worked example. It talks to the TC only
through the public HTTP contract (:mod:`traffic_center.domain.las_contract`).
"""

from traffic_center.las.bron import ReferenceLas
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import ClientTLS, DoelClient, FetchResult, TransferRecord
from traffic_center.las.dossier import generated_chunks, generated_digest
from traffic_center.las.scenarios import TEST_BRIN, Scenario, ScenarioKind, scenario_for
from traffic_center.las.server import LasServer
from traffic_center.las.state import (
    CounterSnapshot,
    DossierCounters,
    NotificationInbox,
    ReceivedNotification,
)

__all__ = [
    "TEST_BRIN",
    "ClientTLS",
    "CounterSnapshot",
    "DoelClient",
    "DossierCounters",
    "FetchResult",
    "LasConfig",
    "LasServer",
    "NotificationInbox",
    "ReceivedNotification",
    "ReferenceLas",
    "Scenario",
    "ScenarioKind",
    "TransferRecord",
    "generated_chunks",
    "generated_digest",
    "scenario_for",
]
