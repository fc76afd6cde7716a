"""The reference LAS: a school's endpoint as the Traffic Center calls it, and a doel client.

Used by the demo, the tests and LAS vendors as a worked example. It talks to the TC only
through the public HTTP contract (:mod:`traffic_center.domain.las_contract`).
"""

from traffic_center.las.bron import ReferenceLas
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import ClientTLS, DoelClient, FetchResult, TransferRecord
from traffic_center.las.dossier import generated_chunks, generated_digest
from traffic_center.las.pupils import TEST_PUPILS, TEST_SCHEME_KEY, Roster
from traffic_center.las.scenarios import TEST_BRIN, Scenario, ScenarioKind, parse_scenario
from traffic_center.las.server import LasServer
from traffic_center.las.state import (
    CounterSnapshot,
    DossierCounters,
    NotificationInbox,
    ReceivedNotification,
)

__all__ = [
    "TEST_BRIN",
    "TEST_PUPILS",
    "TEST_SCHEME_KEY",
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
    "Roster",
    "Scenario",
    "ScenarioKind",
    "TransferRecord",
    "generated_chunks",
    "generated_digest",
    "parse_scenario",
]
