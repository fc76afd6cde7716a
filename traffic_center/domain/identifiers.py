"""OSO identifiers: BRIN, routeringskenmerk, zoeksleutel, koppelsleutel, and the PGN guard."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from enum import StrEnum
from urllib.parse import urlsplit

from traffic_center.domain.errors import (
    ClearPupilNumber,
    InvalidBrin,
    InvalidEndpointKind,
    InvalidKoppelsleutel,
    InvalidOverdrachtsoort,
    InvalidRouteringskenmerk,
    InvalidSector,
    InvalidSessieId,
    InvalidUrl,
    InvalidZoeksleutel,
)

_BRIN = re.compile(r"[0-9]{2}[A-Z]{2}")
_ROUTERINGSKENMERK = re.compile(r"[0-9]{20}")
# The zoeksleutel is opaque to the TC; this shape admits hex and base64(url) digests.
_ZOEKSLEUTEL = re.compile(r"[A-Za-z0-9_\-+/=]{16,128}")
_KOPPELSLEUTEL = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
# A clear PGN is nine digits; inside a longer digit run it is part of another number.
_NINE_DIGITS = re.compile(r"(?<![0-9])[0-9]{9}(?![0-9])")


class Sector(StrEnum):
    PO = "PO"
    VO = "VO"
    SO = "SO"
    VSO = "VSO"
    SBO = "SBO"
    PRO = "PRO"
    SWV = "SWV"


class Overdrachtsoort(StrEnum):
    OVERSTAPDOSSIER = "overstapdossier"
    OVERDRACHT_BINNEN_BRIN = "overdrachtbinnenbrin"
    SWV_DOSSIER = "swv-dossier"


class EndpointKind(StrEnum):
    OV = "OV"  # overstap: exchanges transfer dossiers
    SWV = "SWV"  # samenwerkingsverband feedback flow


def parse_brin(value: str) -> str:
    if not _BRIN.fullmatch(value):
        raise InvalidBrin(f"{value!r} is not a BRIN: two digits and two upper-case letters")
    return value


def parse_routeringskenmerk(value: str) -> str:
    if not _ROUTERINGSKENMERK.fullmatch(value):
        raise InvalidRouteringskenmerk(f"{value!r} is not a routeringskenmerk: 20 digits")
    return value


def parse_zoeksleutel(value: str) -> str:
    if not _ZOEKSLEUTEL.fullmatch(value):
        raise InvalidZoeksleutel()
    refuse_clear_pupil_number(value, field="zoeksleutel")
    return value


def parse_koppelsleutel(value: str) -> str:
    if not _KOPPELSLEUTEL.fullmatch(value):
        raise InvalidKoppelsleutel()
    return value


def parse_sessie_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidSessieId(f"{value!r} is not a UUID") from None
    if str(parsed) != value.lower():
        raise InvalidSessieId(f"{value!r} is not a UUID in its canonical form")
    return str(parsed)


def parse_sector(value: str) -> Sector:
    try:
        return Sector(value)
    except ValueError:
        allowed = ", ".join(s.value for s in Sector)
        raise InvalidSector(f"{value!r} is not a sector; use one of {allowed}") from None


def parse_endpoint_kind(value: str) -> EndpointKind:
    try:
        return EndpointKind(value)
    except ValueError:
        raise InvalidEndpointKind(f"{value!r} is not an endpoint kind; use OV or SWV") from None


def parse_url(value: str) -> str:
    """An endpoint's base URL: absolute https, no query or fragment (we append paths)."""
    parsed = urlsplit(value)
    if parsed.scheme != "https" or not parsed.hostname or parsed.query or parsed.fragment:
        raise InvalidUrl(f"{value!r} is not an absolute https URL without query or fragment")
    return value.rstrip("/")


def parse_overdrachtsoort(value: str) -> Overdrachtsoort:
    try:
        return Overdrachtsoort(value)
    except ValueError:
        allowed = ", ".join(s.value for s in Overdrachtsoort)
        raise InvalidOverdrachtsoort(f"{value!r} is unknown; use one of {allowed}") from None


def is_bsn(digits: str) -> bool:
    """The BSN eleven-test: (9·d1 + … + 2·d8 − d9) mod 11 == 0."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    return (_weighted(digits) - int(digits[8])) % 11 == 0


def is_onderwijsnummer(digits: str) -> bool:
    """The onderwijsnummer test: starts with 1 and (9·d1 + … + 2·d8 − d9) mod 11 == 5.

    (Not ``… mod 11 == d9 + 5``: that misses every number whose check digit is 6 to 9.)
    """
    if len(digits) != 9 or not digits.isdigit() or digits[0] != "1":
        return False
    return (_weighted(digits) - int(digits[8])) % 11 == 5


def _weighted(digits: str) -> int:
    """9·d1 + 8·d2 + … + 2·d8: the weighted sum both check-digit tests share."""
    return sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))


def looks_like_pupil_number(text: str) -> bool:
    return any(
        is_bsn(m.group()) or is_onderwijsnummer(m.group()) for m in _NINE_DIGITS.finditer(text)
    )


def refuse_clear_pupil_number(value: str, *, field: str) -> None:
    """Domain rule 7: no clear PGN may reach the TC, in any field."""
    if looks_like_pupil_number(value):
        raise ClearPupilNumber(f"field {field!r} holds what looks like a BSN or onderwijsnummer")


def refuse_clear_pupil_numbers(fields: Iterable[tuple[str, object]]) -> None:
    for name, value in fields:
        if isinstance(value, str):
            refuse_clear_pupil_number(value, field=name)
