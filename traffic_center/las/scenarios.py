"""Test school 00YY: which answer a zoeksleutel asks the reference LAS for.

The zoeksleutel is opaque to the Traffic Center, so test scripts steer the reference LAS with
it. Every scenario key starts with ``00YY-`` followed by the scenario's name:

    00YY-gereed-<any>            200, a realistic dossier of about 170 kB
    00YY-nietgereed-<any>        409 DossierNogNietGereed, ready (and notified) after a delay
    00YY-geentoestemming-<any>   403 GeenToestemming
    00YY-geeninzage-<any>        403 GeenInzage
    00YY-zondervrijgave-<any>    200, the realistic dossier without the release header
    00YY-bijlagen-<any>          200, a dossier with many attachments, about 6 MB
    00YY-verouderd-<any>         409 DossierVerouderd
    00YY-grootte-<N>[-<tail>]    200, a generated dossier of exactly N bytes
    00YY-hangt-<any>             never answers
    00YY-afbreken-<N>[-<tail>]   declares N bytes, sends about half, drops the connection
    00YY-trickle-<N>[-<tail>]    N bytes, 1 KiB every 50 ms
    00YY-liegt-<N>[-<tail>]      N bytes, chunked: no Content-Length
    anything else                404 DossierNietGevonden

For the sized scenarios a tail whose first ``-``-separated part is ``m<MARKER>`` (letters and
digits) embeds MARKER in the generated content, as a canary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from traffic_center.domain.results import ResultCode

TEST_BRIN = "00YY"
SCENARIO_PREFIX = f"{TEST_BRIN}-"
# A typo in a test script should not make a LAS stream for hours; 16 GiB covers every test.
MAX_GENERATED_BYTES = 16 * 1024**3

_SCENARIO = re.compile(r"00YY-(?P<name>[a-z]+)-(?P<rest>.*)")
_SIZED = re.compile(r"(?P<size>[0-9]{1,12})(?:-(?P<tail>.*))?")
_MARKER = re.compile(r"m(?P<marker>[A-Za-z0-9]+)")


class ScenarioKind(StrEnum):
    GEREED = "gereed"
    NIET_GEREED = "nietgereed"
    GEEN_TOESTEMMING = "geentoestemming"
    GEEN_INZAGE = "geeninzage"
    ZONDER_VRIJGAVE = "zondervrijgave"
    BIJLAGEN = "bijlagen"
    VEROUDERD = "verouderd"
    GROOTTE = "grootte"
    HANGT = "hangt"
    AFBREKEN = "afbreken"
    TRICKLE = "trickle"
    LIEGT = "liegt"
    # Not a key anyone writes: what every unknown zoeksleutel resolves to.
    ONBEKEND = "onbekend"


# The scenarios whose key carries a byte count: 00YY-<name>-<N>[-<tail>].
SIZED_KINDS = frozenset(
    {ScenarioKind.GROOTTE, ScenarioKind.AFBREKEN, ScenarioKind.TRICKLE, ScenarioKind.LIEGT}
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A dossier request the bron answers with an OSO result code instead of the dossier."""

    code: ResultCode
    status: int
    title: str


NOT_FOUND = Refusal(ResultCode.DOSSIER_NIET_GEVONDEN, 404, "No dossier for this zoeksleutel")
NOT_READY = Refusal(ResultCode.DOSSIER_NOG_NIET_GEREED, 409, "The dossier is not ready yet")

# The scenarios that always refuse, with the status the LAS contract gives each code.
REFUSALS: dict[ScenarioKind, Refusal] = {
    ScenarioKind.ONBEKEND: NOT_FOUND,
    ScenarioKind.GEEN_INZAGE: Refusal(
        ResultCode.GEEN_INZAGE, 403, "The parents have not inspected the dossier"
    ),
    ScenarioKind.GEEN_TOESTEMMING: Refusal(
        ResultCode.GEEN_TOESTEMMING, 403, "The parents have not consented to the transfer"
    ),
    ScenarioKind.VEROUDERD: Refusal(
        ResultCode.DOSSIER_VEROUDERD, 409, "The dossier is older than the aanvraagdatum"
    ),
}


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: ScenarioKind
    size: int | None = None  # bytes, for the sized kinds
    marker: str | None = None  # a canary to embed in generated content


UNKNOWN = Scenario(ScenarioKind.ONBEKEND)


def scenario_for(zoeksleutel: str) -> Scenario:
    """The scenario a zoeksleutel asks for; unknown or malformed keys are ONBEKEND (404)."""
    match = _SCENARIO.fullmatch(zoeksleutel)
    if match is None:
        return UNKNOWN
    try:
        kind = ScenarioKind(match["name"])
    except ValueError:
        return UNKNOWN
    if kind is ScenarioKind.ONBEKEND:
        return UNKNOWN
    if kind in SIZED_KINDS:
        return _sized(kind, match["rest"])
    return Scenario(kind)


def _sized(kind: ScenarioKind, rest: str) -> Scenario:
    match = _SIZED.fullmatch(rest)
    if match is None:
        return UNKNOWN
    size = int(match["size"])
    if size > MAX_GENERATED_BYTES:
        return UNKNOWN
    return Scenario(kind, size=size, marker=_marker(match["tail"]))


def _marker(tail: str | None) -> str | None:
    if not tail:
        return None
    found = _MARKER.fullmatch(tail.split("-", 1)[0])
    return found["marker"] if found else None
