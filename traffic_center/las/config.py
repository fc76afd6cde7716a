"""How one reference LAS endpoint is configured: :class:`LasConfig`, checked as it is built."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.identifiers import (
    Sector,
    parse_brin,
    parse_routeringskenmerk,
    parse_sector,
    parse_url,
)
from traffic_center.las.pupils import TEST_SCHEME_KEY, Roster
from traffic_center.las.scenarios import TEST_BRIN

if TYPE_CHECKING:  # only named here: the CLI reads this module's defaults without httpx
    from traffic_center.las.doel import ClientTLS

DEFAULT_BASE_PATH = "/oso"

_BASE_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")


@dataclass(frozen=True, slots=True)
class LasConfig:
    """One reference LAS endpoint. ``ca`` verifies the TC's relay certificate (and, for the
    notifications this LAS sends, the TC's server certificate)."""

    cert: Path
    key: Path
    ca: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port; LasServer.port says which
    path: str = DEFAULT_BASE_PATH
    sector: Sector = Sector.PO
    brin: str = TEST_BRIN
    dossiers: Path | None = None  # <dir>/<PGN>.xml is served for that pupil when it exists
    # Zoeksleutel v1's scheme key (docs/zoeksleutel.md); the default is the public test key.
    scheme_key: bytes = field(default=TEST_SCHEME_KEY, repr=False)
    # Pupils on top of test school 00YY's (las.pupils.TEST_PUPILS): PGN → scenario.
    pupils: Mapping[str, str] = field(default_factory=dict)
    tc_url: str | None = None  # where to send meldenNotificatieRequest (nietgereed)
    client_tls: ClientTLS | None = None  # this school's own client certificate, for tc_url
    notify_after: float = 1.0
    # sessiecontroleRequest: before answering a relayed dossier request, check it against its
    # session at tc_url (what a conforming bron does; off by default, so the relay tests' audit
    # trails and counters stay as they were).
    check_session: bool = False
    # The SWV flow, this LAS as the school: at start, tell each SWV endpoint about the pupil
    # (PGN → the SWV's routeringskenmerk); needs tc_url and client_tls.
    swv_meldingen: Mapping[str, str] = field(default_factory=dict)
    # Hanging requests (scenario hangt) would otherwise hold a stopping server for long.
    shutdown_grace_seconds: int = 3

    def __post_init__(self) -> None:
        if not _BASE_PATH.fullmatch(self.path):
            raise InvalidInput(f"path {self.path!r} must look like /oso: no trailing slash")
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"port {self.port} is not a TCP port")
        if not (self.notify_after >= 0 and math.isfinite(self.notify_after)):
            raise InvalidInput("notify_after must be a number of seconds, at least 0")
        parse_brin(self.brin)
        for pgn, routeringskenmerk in self.swv_meldingen.items():
            parse_routeringskenmerk(routeringskenmerk)
            Roster(self.scheme_key, {pgn: "gereed"})  # the PGN's form, checked
        Roster(self.scheme_key, self.pupils)  # every PGN, scenario and the key, checked
        # Accept "VO" as well as Sector.VO, but never a sector that does not exist.
        object.__setattr__(self, "sector", parse_sector(str(self.sector)))
        if self.tc_url is not None:
            parse_url(self.tc_url)
