"""The record of one exchange: metadata only, never a payload, a zoeksleutel or a pupil number."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class ExchangeType(StrEnum):
    DOSSIER = "dossier"  # documentRequest relayed to the bron, the dossier streamed back
    NOTIFICATION = "notificatie"  # meldenNotificatieRequest relayed to the doel


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    type: ExchangeType
    transaction_id: str
    sessie_id: str | None
    doel_brin: str | None
    doel_routeringskenmerk: str | None
    bron_brin: str | None
    bron_routeringskenmerk: str | None
    # An OSO result code (OverdrachtGeslaagd, DossierNogNietGereed, …) or the TC's error code.
    result: str
    caller_serial: str
    request_in: dt.datetime
    # What the LAS on the other side answered (HTTP status); None when it was never reached.
    upstream_status: int | None = None
    forwarded_at: dt.datetime | None = None
    response_in: dt.datetime | None = None
    response_out: dt.datetime | None = None
    size_bytes: int | None = None
    sha256: str | None = None


# Results of a dossier relay besides the OSO codes and the error codes: the doel hung up.
DOEL_DISCONNECTED = "AfgebrokenDoorDoel"
