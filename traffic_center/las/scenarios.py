"""Test school 00YY: which answer a pupil's dossier request gets from the reference LAS.

The zoeksleutel is a keyed hash (zoeksleutel v1), so it cannot carry instructions: each pupil
of the reference LAS is enrolled with a scenario (see :mod:`traffic_center.las.pupils`), and a
dossier request for that pupil's zoeksleutel gets the scenario's answer. A scenario is written
as its name, and for the sized ones a byte count and optionally a canary marker:

    gereed                 200, a realistic dossier of about 170 kB
    nietgereed             409 DossierNogNietGereed, ready (and notified) after a delay
    geentoestemming        403 GeenToestemming
    geeninzage             403 GeenInzage
    zondervrijgave         200, the realistic dossier without the release header
    bijlagen               200, a dossier with many attachments, about 6 MB
    verouderd              409 DossierVerouderd
    grootte-<N>[-m<M>]     200, a generated dossier of exactly N bytes
    hangt                  never answers
    afbreken-<N>[-m<M>]    declares N bytes, sends about half, drops the connection
    trickle-<N>[-m<M>]     N bytes, 1 KiB every 50 ms
    liegt-<N>[-m<M>]       N bytes, chunked: no Content-Length
    (a pupil not enrolled) 404 DossierNietGevonden

``m<M>`` (letters and digits) embeds M in the generated content, as a canary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.results import ResultCode

TEST_BRIN = "00YY"
# A typo in a test script should not make a LAS stream for hours; 16 GiB covers every test.
MAX_GENERATED_BYTES = 16 * 1024**3

_SCENARIO = re.compile(
    r"(?P<name>[a-z]+)(?:-(?P<size>[0-9]{1,12}))?(?:-m(?P<marker>[A-Za-z0-9]{1,64}))?"
)


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
    # Not a scenario anyone enrolls: what the zoeksleutel of a pupil not enrolled resolves to.
    ONBEKEND = "onbekend"


# The scenarios written with a byte count: <name>-<N>[-m<MARKER>].
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


def parse_scenario(text: str) -> Scenario:
    """``gereed``, ``grootte-300000``, ``trickle-5000-mCanary42``…; InvalidInput otherwise."""
    match = _SCENARIO.fullmatch(text)
    if match is None:
        raise InvalidInput(f"{text!r} is not a scenario: NAME or NAME-BYTES[-mMARKER]")
    try:
        kind = ScenarioKind(match["name"])
    except ValueError:
        raise InvalidInput(f"{match['name']!r} is not a scenario of the reference LAS") from None
    if kind is ScenarioKind.ONBEKEND:
        raise InvalidInput("onbekend is what a pupil who is not enrolled gets; do not enroll it")
    if kind not in SIZED_KINDS:
        if match["size"] is not None or match["marker"] is not None:
            raise InvalidInput(f"scenario {kind.value} takes no byte count or marker")
        return Scenario(kind)
    if match["size"] is None:
        raise InvalidInput(f"scenario {kind.value} needs a byte count: {kind.value}-BYTES")
    size = int(match["size"])
    if size > MAX_GENERATED_BYTES:
        raise InvalidInput(f"{size} bytes is more than the {MAX_GENERATED_BYTES} a LAS generates")
    return Scenario(kind, size=size, marker=match["marker"])
