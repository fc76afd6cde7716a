"""The rules for granting a session (rules 2 and 3 in docs/rules.md), who the bron is, and the
parent gate's sector pairs (rule 8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from traffic_center.domain.errors import (
    AanleverpuntNietActief,
    GeenRelatieMetDoel,
    OnbekendAanleverpunt,
    VerstrekkerNietBekend,
)
from traffic_center.domain.identifiers import EndpointKind, Overdrachtsoort, Sector
from traffic_center.domain.models import Endpoint, School, Session


class SectorFamily(StrEnum):
    PO = "PO"
    VO = "VO"


# Special primary schools transfer like PO, special secondary and practical education like VO.
_FAMILY = {
    Sector.PO: SectorFamily.PO,
    Sector.SBO: SectorFamily.PO,
    Sector.SO: SectorFamily.PO,
    Sector.VO: SectorFamily.VO,
    Sector.VSO: SectorFamily.VO,
    Sector.PRO: SectorFamily.VO,
}

# The overstap kinds an overstapdossier may be (OSO): POPO, POVO, VOVO.
ALLOWED_OVERSTAP = frozenset(
    {
        (SectorFamily.PO, SectorFamily.PO),
        (SectorFamily.PO, SectorFamily.VO),
        (SectorFamily.VO, SectorFamily.VO),
    }
)


class ParentRelease(StrEnum):
    """Rule 8: what the parents must have done before a dossier may be sent."""

    INZAGE = "inzage"  # inspected: PO→PO and PO→VO
    TOESTEMMING = "toestemming"  # approved: VO→VO


def overstap(bron: Sector, doel: Sector) -> tuple[SectorFamily, SectorFamily] | None:
    bron_family, doel_family = _FAMILY.get(bron), _FAMILY.get(doel)
    if bron_family is None or doel_family is None:
        return None
    return (bron_family, doel_family)


def required_release(bron: Sector, doel: Sector) -> ParentRelease | None:
    pair = overstap(bron, doel)
    if pair is None:
        return None
    if pair == (SectorFamily.VO, SectorFamily.VO):
        return ParentRelease.TOESTEMMING
    return ParentRelease.INZAGE


def release_satisfies(needed: ParentRelease, attested: str) -> bool:
    """Whether the release a bron attests covers what the transfer needs.

    Consent (toestemming) includes having seen the dossier (inzage).
    """
    value = attested.strip().lower()
    if needed is ParentRelease.INZAGE:
        return value in (ParentRelease.INZAGE.value, ParentRelease.TOESTEMMING.value)
    return value == ParentRelease.TOESTEMMING.value


def bron_endpoint_kind(overdrachtsoort: Overdrachtsoort) -> EndpointKind:
    """An swv-dossier comes from a school's SWV endpoint; every other dossier from an OV one."""
    if overdrachtsoort is Overdrachtsoort.SWV_DOSSIER:
        return EndpointKind.SWV
    return EndpointKind.OV


def is_bron_endpoint(session: Session, endpoint: Endpoint) -> bool:
    """The one definition of "this endpoint is the session's bron" (rules 1 and 4).

    The endpoint named at overdrachtRequest, if one was named; otherwise any endpoint of the
    bron school of the kind the overdrachtsoort asks for.
    """
    if endpoint.brin != session.bron_brin:
        return False
    if session.bron_routeringskenmerk is not None:
        return endpoint.routeringskenmerk == session.bron_routeringskenmerk
    return endpoint.kind is bron_endpoint_kind(session.overdrachtsoort)


@dataclass(frozen=True, slots=True)
class GrantRequest:
    doel_school: School
    doel_endpoint: Endpoint
    bron_brin: str
    bron_routeringskenmerk: str | None
    overdrachtsoort: Overdrachtsoort


def bron_endpoints_for(
    request: GrantRequest, bron_school: School | None, bron_endpoints: Sequence[Endpoint]
) -> list[Endpoint]:
    """Apply rules 2 and 3; return the bron endpoints the doel may ask."""
    if bron_school is None or not bron_school.active:
        raise VerstrekkerNietBekend(f"school {request.bron_brin} is not a known, active bron")
    _check_relation(request, bron_school)
    wanted_kind = bron_endpoint_kind(request.overdrachtsoort)
    if request.bron_routeringskenmerk is not None:
        named = [e for e in bron_endpoints if e.routeringskenmerk == request.bron_routeringskenmerk]
        if not named:
            raise OnbekendAanleverpunt(
                f"{request.bron_routeringskenmerk} is not an endpoint of {request.bron_brin}"
            )
        if not named[0].active:
            raise AanleverpuntNietActief(f"{request.bron_routeringskenmerk} is not active")
        return named
    usable = [e for e in bron_endpoints if e.active and e.kind is wanted_kind]
    if not usable:
        raise AanleverpuntNietActief(f"school {request.bron_brin} has no active endpoint")
    return usable


def _check_relation(request: GrantRequest, bron_school: School) -> None:
    doel_school = request.doel_school
    if request.overdrachtsoort is Overdrachtsoort.OVERDRACHT_BINNEN_BRIN:
        if bron_school.brin != doel_school.brin:
            raise GeenRelatieMetDoel("overdrachtbinnenbrin requires the same BRIN on both sides")
        return
    if request.overdrachtsoort is Overdrachtsoort.OVERSTAPDOSSIER:
        pair = overstap(bron_school.sector, doel_school.sector)
        if pair not in ALLOWED_OVERSTAP:
            raise GeenRelatieMetDoel(
                f"an overstapdossier goes PO→PO, PO→VO or VO→VO, not "
                f"{bron_school.sector.value}→{doel_school.sector.value}"
            )
