"""The rules for granting a session (rules 2 and 3 in docs/rules.md), who the bron is, the
parent gate's sector pairs (rule 8), and which endpoints the SWV flow may join (rule 10)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from traffic_center.domain.errors import (
    AanleverpuntNietActief,
    AanleverpuntVerkeerdeSoort,
    GeenRelatieMetDoel,
    KoppelsleutelNotFound,
    OnbekendAanleverpunt,
    SearchKeyWrongKind,
    VerstrekkerNietBekend,
)
from traffic_center.domain.identifiers import EndpointKind, Overdrachtsoort, Sector
from traffic_center.domain.models import Endpoint, School, Session, SwvLink


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


def overstap_allowed(bron: Sector, doel: Sector) -> bool:
    """Rule 3: an overstapdossier goes PO→PO, PO→VO or VO→VO (the special sectors with
    their family), never to or from a samenwerkingsverband."""
    return overstap(bron, doel) in ALLOWED_OVERSTAP


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


# Rule 10: the sectors of schools; a samenwerkingsverband (sector SWV) is not one.
SCHOOL_SECTORS = frozenset(_FAMILY)


def bron_endpoint_kind(overdrachtsoort: Overdrachtsoort) -> EndpointKind:
    """Rule 10: every dossier comes from a school's ordinary (OV) endpoint, an swv-dossier too:
    the school's LAS supplies it to its samenwerkingsverband."""
    del overdrachtsoort  # the same for every kind; kept so callers say what they ask about
    return EndpointKind.OV


def doel_endpoint_kind(overdrachtsoort: Overdrachtsoort) -> EndpointKind:
    """Rule 10: an swv-dossier goes to an SWV endpoint; every other dossier to an OV one."""
    if overdrachtsoort is Overdrachtsoort.SWV_DOSSIER:
        return EndpointKind.SWV
    return EndpointKind.OV


def search_key_label(overdrachtsoort: Overdrachtsoort) -> str:
    """Which key names the dossier: the TC's koppelsleutel for an swv-dossier (the SWV flow),
    the zoeksleutel for every other overdrachtsoort."""
    if overdrachtsoort is Overdrachtsoort.SWV_DOSSIER:
        return "koppelsleutel"
    return "zoeksleutel"


def check_search_key_kind(overdrachtsoort: Overdrachtsoort, *, koppelsleutel: bool) -> None:
    if koppelsleutel != (search_key_label(overdrachtsoort) == "koppelsleutel"):
        raise SearchKeyWrongKind()


def check_swv_pair(
    school: School, school_endpoint: Endpoint, swv: School, swv_endpoint: Endpoint
) -> None:
    """Rule 10: the SWV flow runs between a school's OV endpoint and an SWV endpoint of a
    samenwerkingsverband, nothing else."""
    if school_endpoint.kind is not EndpointKind.OV:
        raise AanleverpuntVerkeerdeSoort(
            f"{school_endpoint.routeringskenmerk} is an SWV endpoint; a school uses its OV one"
        )
    if swv_endpoint.kind is not EndpointKind.SWV:
        raise AanleverpuntVerkeerdeSoort(f"{swv_endpoint.routeringskenmerk} is not an SWV endpoint")
    if school.sector not in SCHOOL_SECTORS:
        raise GeenRelatieMetDoel("the SWV flow starts at a school, not at a samenwerkingsverband")
    if swv.sector is not Sector.SWV:
        raise GeenRelatieMetDoel(f"{swv.brin} is not a samenwerkingsverband (sector SWV)")


def swv_bron_for(
    link: SwvLink | None, *, swv_endpoint: Endpoint, bron_brin: str, named: str | None
) -> str:
    """Rule 10: an swv-dossier session only for a recorded triple, only to its SWV endpoint;
    its bron is the triple's school endpoint. Anyone else's koppelsleutel does not exist."""
    if (
        link is None
        or link.swv_routeringskenmerk != swv_endpoint.routeringskenmerk
        or link.school_brin != bron_brin
    ):
        raise KoppelsleutelNotFound()
    if named is not None and named != link.school_routeringskenmerk:
        raise OnbekendAanleverpunt(f"{named} is not the endpoint that notified this koppelsleutel")
    return link.school_routeringskenmerk


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
    check_doel_kind(request)
    _check_relation(request, bron_school)
    wanted_kind = bron_endpoint_kind(request.overdrachtsoort)
    if request.bron_routeringskenmerk is not None:
        named = [e for e in bron_endpoints if e.routeringskenmerk == request.bron_routeringskenmerk]
        if not named:
            raise OnbekendAanleverpunt(
                f"{request.bron_routeringskenmerk} is not an endpoint of {request.bron_brin}"
            )
        if named[0].kind is not wanted_kind:
            # Rule 10: never an overstapdossier (or any dossier) from an SWV endpoint.
            raise AanleverpuntVerkeerdeSoort(
                f"{request.bron_routeringskenmerk} is an {named[0].kind.value} endpoint; a "
                f"{request.overdrachtsoort.value} comes from an {wanted_kind.value} endpoint"
            )
        if not named[0].active:
            raise AanleverpuntNietActief(f"{request.bron_routeringskenmerk} is not active")
        return named
    usable = [e for e in bron_endpoints if e.active and e.kind is wanted_kind]
    if not usable:
        raise AanleverpuntNietActief(f"school {request.bron_brin} has no active endpoint")
    return usable


def check_doel_kind(request: GrantRequest) -> None:
    """Rule 10: the doel asks from an endpoint of the kind the overdrachtsoort goes to."""
    wanted = doel_endpoint_kind(request.overdrachtsoort)
    if request.doel_endpoint.kind is not wanted:
        raise AanleverpuntVerkeerdeSoort(
            f"your endpoint is an {request.doel_endpoint.kind.value} endpoint; a "
            f"{request.overdrachtsoort.value} goes to an {wanted.value} endpoint"
        )


def _check_relation(request: GrantRequest, bron_school: School) -> None:
    doel_school = request.doel_school
    if request.overdrachtsoort is Overdrachtsoort.SWV_DOSSIER:
        # Rule 10: from a school to its samenwerkingsverband, never between schools.
        if doel_school.sector is not Sector.SWV:
            raise GeenRelatieMetDoel("an swv-dossier goes only to a samenwerkingsverband")
        if bron_school.sector not in SCHOOL_SECTORS:
            raise GeenRelatieMetDoel("an swv-dossier comes only from a school")
        return
    if request.overdrachtsoort is Overdrachtsoort.OVERDRACHT_BINNEN_BRIN:
        if bron_school.brin != doel_school.brin:
            raise GeenRelatieMetDoel("overdrachtbinnenbrin requires the same BRIN on both sides")
        return
    if request.overdrachtsoort is Overdrachtsoort.OVERSTAPDOSSIER and not overstap_allowed(
        bron_school.sector, doel_school.sector
    ):
        raise GeenRelatieMetDoel(
            f"an overstapdossier goes PO→PO, PO→VO or VO→VO, not "
            f"{bron_school.sector.value}→{doel_school.sector.value}"
        )
