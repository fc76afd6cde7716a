"""The domain on its own: identifiers, the PGN guard, result ranks, sessions and rules."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest

from tests.support.builders import SEARCH_KEY_HMAC, granted_session
from traffic_center.domain import errors as e
from traffic_center.domain.identifiers import (
    Overdrachtsoort,
    Sector,
    is_bsn,
    is_onderwijsnummer,
    looks_like_pupil_number,
    parse_brin,
    parse_routeringskenmerk,
    parse_sessie_id,
    parse_url,
    parse_zoeksleutel,
)
from traffic_center.domain.models import SessionState
from traffic_center.domain.results import ResultCode, best_result, parse_closing_result, rank
from traffic_center.domain.rules import ParentRelease, required_release
from traffic_center.domain.sessions import SessionCheck, close, effective_state, verify_check

VALID_BSNS = [
    "662460613",
    "482782481",
    "613543439",
    "559144428",
    "991904862",
    "388483763",
    "118716943",
]


@pytest.mark.parametrize("bsn", VALID_BSNS)
def test_known_test_bsns_pass_the_eleven_test(bsn: str) -> None:
    assert is_bsn(bsn)
    assert looks_like_pupil_number(f"prefix {bsn} suffix")


def test_a_uuid_is_never_taken_for_a_pupil_number() -> None:
    """A UUID (the usual Idempotency-Key) is random hex: now and then its last group holds
    nine digits that pass the 11-test (about 1 in 800). The TC refused such keys with 422
    PgnNietToegestaan; the same digits outside a UUID are still caught."""
    assert is_bsn("123456782")
    assert not looks_like_pupil_number("3f2a1b4c-5d6e-4f70-8a9b-ab123456782c")
    assert not looks_like_pupil_number("3F2A1B4C-5D6E-4F70-8A9B-AB123456782C")
    assert looks_like_pupil_number("leerling ab123456782c")
    assert looks_like_pupil_number("3f2a1b4c-5d6e-4f70-8a9b-ab123456782c 123456782")
    keys = [
        str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))
        for seed in range(20_000)
    ]
    assert not [key for key in keys if looks_like_pupil_number(key)]


def test_onderwijsnummer_and_near_misses() -> None:
    assert is_onderwijsnummer("101211151")
    assert not is_bsn("662460614")
    assert not is_onderwijsnummer("201211151")
    # Nine digits inside a 20-digit routeringskenmerk are part of another number.
    assert not looks_like_pupil_number("00000007662460613000")


@pytest.mark.parametrize(
    ("parse", "good", "bad", "error"),
    [
        (parse_brin, "12AB", "12ab", e.InvalidBrin),
        (parse_routeringskenmerk, "0" * 20, "0" * 19, e.InvalidRouteringskenmerk),
        (
            parse_zoeksleutel,
            "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
            "a" * 32,
            e.InvalidZoeksleutel,
        ),
        (parse_sessie_id, "0f8fad5b-d9cb-469f-a165-70867728950e", "nope", e.InvalidSessieId),
        (parse_url, "https://las.example/oso", "http://las.example/oso", e.InvalidUrl),
    ],
)
def test_identifier_parsing(parse: object, good: str, bad: str, error: type[Exception]) -> None:
    assert callable(parse)
    assert parse(good)
    with pytest.raises(error):
        parse(bad)


def test_a_bsn_as_zoeksleutel_is_a_pupil_number_error_not_a_format_error() -> None:
    with pytest.raises(e.ClearPupilNumber):
        parse_zoeksleutel("xx662460613xxxxxxx")


def test_best_result_ordering() -> None:
    assert rank(ResultCode.OVERDRACHT_GESLAAGD) == 0
    assert (
        best_result([ResultCode.DOSSIER_NIET_GEVONDEN, ResultCode.DOSSIER_NOG_NIET_GEREED])
        is ResultCode.DOSSIER_NOG_NIET_GEREED
    )
    with pytest.raises(e.InvalidResultCode):
        parse_closing_result("SessieValide")
    with pytest.raises(e.InvalidResultCode):
        best_result([])


def test_parent_release_by_sector_pair() -> None:
    assert required_release(Sector.PO, Sector.VO) is ParentRelease.INZAGE
    assert required_release(Sector.PO, Sector.PO) is ParentRelease.INZAGE
    assert required_release(Sector.VO, Sector.VO) is ParentRelease.TOESTEMMING
    assert required_release(Sector.SWV, Sector.VO) is None


def test_session_state_machine() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    session = granted_session(now)
    check = SessionCheck(
        "34CD", "2" * 20, "12AB", "1" * 20, Overdrachtsoort.OVERSTAPDOSSIER, SEARCH_KEY_HMAC
    )
    assert verify_check(session, check, now).state is SessionState.CHECKED
    with pytest.raises(e.SessieAfwijkend):
        verify_check(
            session,
            SessionCheck(
                "34CD", "2" * 20, "12AB", "1" * 20, Overdrachtsoort.OVERSTAPDOSSIER, "x" * 64
            ),
            now,
        )
    later = now + dt.timedelta(hours=2)
    assert effective_state(session, later) is SessionState.EXPIRED
    with pytest.raises(e.SessieVerlopen):
        verify_check(session, check, later)
    closed = close(session, result=ResultCode.GEEN_INZAGE, routeringskenmerk="2" * 20, now=now)
    assert closed.state is SessionState.CLOSED
    with pytest.raises(e.SessieReedsAfgemeld):
        close(closed, result=ResultCode.GEEN_INZAGE, routeringskenmerk="2" * 20, now=now)


def test_consent_covers_inspection_but_not_the_other_way_round() -> None:
    from traffic_center.domain.rules import release_satisfies

    assert release_satisfies(ParentRelease.INZAGE, "inzage")
    assert release_satisfies(ParentRelease.INZAGE, " Toestemming ")
    assert release_satisfies(ParentRelease.TOESTEMMING, "toestemming")
    assert not release_satisfies(ParentRelease.TOESTEMMING, "inzage")
    assert not release_satisfies(ParentRelease.INZAGE, "")
