"""OSO result codes and their "best result" rank, in one place.

The doel closes a session with the best result over every endpoint it asked (afmelding). The
OSO sources name the codes but not their order; this is the project's order, best first:
success, then outcomes that promise the dossier later, then refusals by the bron, then
failures of the exchange itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from traffic_center.domain.errors import InvalidResultCode


class ResultCode(StrEnum):
    OVERDRACHT_GESLAAGD = "OverdrachtGeslaagd"
    DOSSIER_NOG_NIET_GEREED = "DossierNogNietGereed"
    GEEN_INZAGE = "GeenInzage"
    GEEN_TOESTEMMING = "GeenToestemming"
    DOSSIER_VEROUDERD = "DossierVerouderd"
    DOSSIER_NIET_GEVONDEN = "DossierNietGevonden"
    GEEN_RELATIE_MET_DOEL = "GeenRelatieMetDoel"
    SESSIE_AFWIJKEND = "SessieAfwijkend"
    ONBEKEND_AANLEVERPUNT = "OnbekendAanleverpunt"
    AANLEVERPUNT_NIET_ACTIEF = "AanleverpuntNietActief"
    VERSTREKKER_NIET_BEKEND = "VerstrekkerNietBekend"
    CERTIFICAAT_ONGELDIG = "CertificaatOngeldig"
    OVERDRACHT_MISLUKT = "OverdrachtMislukt"
    SESSIE_VERLOPEN = "SessieVerlopen"
    SESSIE_REEDS_AFGEMELD = "SessieReedsAfgemeld"
    # Answers rather than outcomes: never used to close a session.
    SESSIE_VALIDE = "SessieValide"
    NOTIFICATIE_ONTVANGEN = "NotificatieOntvangen"
    TERUGKOPPELING_ONTVANGEN = "TerugkoppelingOntvangen"


# Best first. Position is the rank; a lower index is a better result.
_CLOSING_ORDER: tuple[ResultCode, ...] = (
    ResultCode.OVERDRACHT_GESLAAGD,
    ResultCode.DOSSIER_NOG_NIET_GEREED,
    ResultCode.GEEN_INZAGE,
    ResultCode.GEEN_TOESTEMMING,
    ResultCode.DOSSIER_VEROUDERD,
    ResultCode.DOSSIER_NIET_GEVONDEN,
    ResultCode.ONBEKEND_AANLEVERPUNT,
    ResultCode.AANLEVERPUNT_NIET_ACTIEF,
    ResultCode.OVERDRACHT_MISLUKT,
)
# Not closing results: SessieAfwijkend, GeenRelatieMetDoel, VerstrekkerNietBekend and
# CertificaatOngeldig refuse a message, so no session (or no exchange in it) came of them;
# a doel that met one of them closes with OverdrachtMislukt.

CLOSING_RESULTS: frozenset[ResultCode] = frozenset(_CLOSING_ORDER)

# "Closing a session" (docs/rules.md): the relay's own failures are not results a doel closes
# with; it closes with OverdrachtMislukt. Keyed by the problem code the doel received.
RELAY_FAILURE_CODES: frozenset[str] = frozenset(
    {
        "AanleverpuntOnbereikbaar",
        "AanleverpuntTijdslimiet",
        "OngeldigAntwoordAanleverpunt",
        "DossierTeGroot",
        "OverdrachtAfgebroken",  # a truncated stream: never a dossier
        "TeVeelOverdrachten",
        "RelayNietGeconfigureerd",
    }
)


def closing_result_for(answer_code: str) -> ResultCode:
    """What a doel closes with after a documentRequest answered ``answer_code``."""
    if answer_code in RELAY_FAILURE_CODES:
        return ResultCode.OVERDRACHT_MISLUKT
    try:
        code = ResultCode(answer_code)
    except ValueError:
        return ResultCode.OVERDRACHT_MISLUKT
    return code if code in CLOSING_RESULTS else ResultCode.OVERDRACHT_MISLUKT


def closing_results_best_first() -> tuple[ResultCode, ...]:
    """The results a session may be closed with: the contract's enum."""
    return _CLOSING_ORDER


def rank(code: ResultCode) -> int:
    """0 is best. Only results a session may be closed with have a rank."""
    try:
        return _CLOSING_ORDER.index(code)
    except ValueError:
        raise InvalidResultCode(f"{code.value} is not a closing result") from None


def best_result(codes: Iterable[ResultCode]) -> ResultCode:
    ranked = sorted(codes, key=rank)
    if not ranked:
        raise InvalidResultCode("no results to choose from")
    return ranked[0]


def parse_closing_result(value: str) -> ResultCode:
    try:
        code = ResultCode(value)
    except ValueError:
        raise InvalidResultCode("not an OSO result code") from None
    if code not in CLOSING_RESULTS:
        raise InvalidResultCode(f"{code.value} cannot close a session")
    return code
