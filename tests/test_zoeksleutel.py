"""Zoeksleutel v1 (docs/zoeksleutel.md) and the PGN guard: test vectors, form, written forms.

The acceptance of issue #12: 100,000 random well-formed zoeksleutels are all accepted; clear
PGNs in every written form are all refused in a free-text field.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import re
import secrets
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.pupils import bsn_from, onderwijsnummer_from
from tests.test_domain import VALID_BSNS
from traffic_center.broker.service import CheckRequest, SessionRequest, guarded_fields
from traffic_center.domain import errors as e
from traffic_center.domain.identifiers import (
    ZOEKSLEUTEL_PATTERN,
    derive_zoeksleutel,
    is_bsn,
    is_onderwijsnummer,
    looks_like_pupil_number,
    parse_zoeksleutel,
    refuse_clear_pupil_numbers,
)
from traffic_center.las.pupils import TEST_SCHEME_KEY

# docs/zoeksleutel.md and the OSO domain reference: K = 0x00, 0x01, …, 0x1f.
TEST_VECTORS = {
    "662460613": "rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc",
    "101211151": "-TMcRomfp9KoMSKYhpdDlJ2jE3CdffsL77Sy6QkH4lk",
}
KNOWN_PGNS = [*VALID_BSNS, "101211151"]  # and an onderwijsnummer
SEPARATORS = [" ", ".", "-", "\u00a0"]


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- derivation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("pgn", "zoeksleutel"), TEST_VECTORS.items())
def test_the_test_vectors(pgn: str, zoeksleutel: str) -> None:
    assert bytes(range(32)) == TEST_SCHEME_KEY
    assert derive_zoeksleutel(TEST_SCHEME_KEY, pgn) == zoeksleutel
    assert parse_zoeksleutel(zoeksleutel) == zoeksleutel


def test_the_derivation_is_the_documented_hmac() -> None:
    key = secrets.token_bytes(32)
    message = b"oso-zoeksleutel-v1" + b"\x00" + b"662460613"
    expected = encode(hmac.new(key, message, hashlib.sha256).digest())
    assert derive_zoeksleutel(key, "662460613") == expected


@pytest.mark.parametrize(
    "pgn", ["66246061", "6624606130", "66246061a", " 662460613", "٦٦٢٤٦٠٦١٣", "6624.60.613"]
)
def test_a_pgn_is_nine_ascii_digits(pgn: str) -> None:
    with pytest.raises(ValueError, match="9 ASCII digits"):
        derive_zoeksleutel(TEST_SCHEME_KEY, pgn)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_the_scheme_key_is_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        derive_zoeksleutel(bytes(size), "662460613")


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), digits=st.integers(0, 999_999_999))
def test_every_derived_key_is_well_formed(key: bytes, digits: int) -> None:
    zoeksleutel = derive_zoeksleutel(key, f"{digits:09d}")
    assert re.fullmatch(ZOEKSLEUTEL_PATTERN, zoeksleutel)
    assert parse_zoeksleutel(zoeksleutel) == zoeksleutel


# --- the form --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("kort", "not 4"),
        ("rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc=", "padding"),
        ("rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfkslc" + "A", "not 44"),
        ("rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfksl", "not 42"),
        ("rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfk+lc", "base64url"),
        ("rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfk/lc", "base64url"),
        ("rs6DZvDiIVPMOHJwkW6gLiuFqNkcw408BVfUSVfksld", "exactly 32 bytes"),
        (hashlib.sha256(b"vendor-pupil-21").hexdigest(), "hex digest"),
        ("", "not 0"),
    ],
)
def test_anything_but_43_characters_of_base64url_is_ongeldig(value: str, said: str) -> None:
    with pytest.raises(e.InvalidZoeksleutel) as refused:
        parse_zoeksleutel(value)
    assert refused.value.code == "OngeldigeZoeksleutel"
    assert said in refused.value.detail
    assert value == "" or value not in refused.value.detail


def test_the_pattern_allows_exactly_the_encodings_of_32_bytes() -> None:
    last_characters = {encode(bytes(31) + bytes([b]))[-1] for b in range(256)}
    assert last_characters == set("AEIMQUYcgkosw048")
    for character in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        well_formed = bool(re.fullmatch(ZOEKSLEUTEL_PATTERN, "A" * 42 + character))
        assert well_formed == (character in last_characters)


def test_a_clear_pgn_sent_as_zoeksleutel_is_refused_as_a_pupil_number() -> None:
    for value in ("662460613", "bsn-662460613", "6624.60.613", "101211151x"):
        with pytest.raises(e.ClearPupilNumber):
            parse_zoeksleutel(value)


def test_a_hex_digest_is_malformed_not_a_pupil_number() -> None:
    """The issue's example: sha256("vendor-pupil-21") holds 9 digits that pass the 11-test."""
    digest = hashlib.sha256(b"vendor-pupil-21").hexdigest()
    assert looks_like_pupil_number(digest)
    with pytest.raises(e.InvalidZoeksleutel, match="hex digest"):
        parse_zoeksleutel(digest)


def test_a_well_formed_key_with_a_pupil_number_inside_is_accepted() -> None:
    for pgn in KNOWN_PGNS:
        inside = (
            f"zk{pgn}" + "x" * 31 + "A",
            "A" * 33 + pgn + "A",
            f"zk-{pgn[:4]}-{pgn[4:6]}-{pgn[6:]}-" + "x" * 27 + "w",
        )
        for key in inside:
            assert looks_like_pupil_number(key)  # the guard would take it for one…
            assert parse_zoeksleutel(key) == key  # …but it never runs over a zoeksleutel
            request = SessionRequest("12AB", None, "overstapdossier", key, None)
            refuse_clear_pupil_numbers(guarded_fields(request))


def test_100_000_random_well_formed_zoeksleutels_are_all_accepted() -> None:
    """Acceptance (issue #12): none refused, by the form check or by the broker's guard."""
    for _ in range(100_000):
        key = encode(secrets.token_bytes(32))
        assert parse_zoeksleutel(key) == key
        refuse_clear_pupil_numbers(
            guarded_fields(SessionRequest("12AB", None, "overstapdossier", key, None))
        )


@settings(max_examples=2_000, deadline=None)
@given(raw=st.binary(min_size=32, max_size=32))
def test_any_32_bytes_make_a_well_formed_zoeksleutel(raw: bytes) -> None:
    key = encode(raw)
    assert parse_zoeksleutel(key) == key
    check = CheckRequest("12AB", "0" * 20, "overstapdossier", key)
    refuse_clear_pupil_numbers(guarded_fields(check))


# --- the PGN guard: written forms -------------------------------------------------------------


def pupil_numbers() -> st.SearchStrategy[str]:
    """Valid BSNs and onderwijsnummers, by completing eight random digits."""
    eight = st.integers(0, 99_999_999).map(lambda n: f"{n:08d}")
    bsns = eight.map(bsn_from)
    onderwijsnummers = st.integers(10_000_000, 19_999_999).map(str).map(onderwijsnummer_from)
    return st.one_of(bsns, onderwijsnummers).filter(lambda pgn: pgn is not None).map(str)


def compositions(total: int = 9) -> list[list[int]]:
    """Every way to split nine digits into groups (256 of them)."""
    splits = []
    for cuts in itertools.product([False, True], repeat=total - 1):
        sizes, size = [], 1
        for cut in cuts:
            if cut:
                sizes.append(size)
                size = 1
            else:
                size += 1
        splits.append([*sizes, size])
    return splits


def grouped(pgn: str, sizes: list[int], separator: str) -> str:
    groups, start = [], 0
    for size in sizes:
        groups.append(pgn[start : start + size])
        start += size
    return separator.join(groups)


def with_date(pgn: str, day: dt.date, layout: str, *, date_first: bool) -> str:
    written = day.strftime(layout)
    return written + pgn if date_first else pgn + written


DATE_LAYOUTS = ["%d%m%Y", "%Y%m%d", "%d%m%y", "%y%m%d"]
CONTEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ ", max_size=12)
BOUNDARY = st.sampled_from([" ", ":", "=", "_", "/", "(", ", ", "#", ""])


@st.composite
def written_pupil_numbers(draw: st.DrawFn) -> str:
    pgn = draw(pupil_numbers())
    form = draw(st.sampled_from(["plain", "grouped", "date", "date-and-separator"]))
    if form == "plain":
        return pgn
    if form == "grouped":
        sizes = draw(st.sampled_from(compositions()[1:]))  # [1:]: not the single group
        return grouped(pgn, sizes, draw(st.sampled_from(SEPARATORS)))
    day = draw(st.dates(dt.date(1950, 1, 1), dt.date(2099, 12, 31)))
    layout = draw(st.sampled_from(DATE_LAYOUTS))
    if form == "date":
        return with_date(pgn, day, layout, date_first=draw(st.booleans()))
    return f"{pgn} {day.strftime('%d-%m-%Y')}"


@settings(max_examples=1_000, deadline=None)
@given(
    written=written_pupil_numbers(),
    before=CONTEXT,
    left=BOUNDARY,
    right=BOUNDARY,
    after=CONTEXT,
    field=st.sampled_from(["Idempotency-Key", "bron_brin", "overdrachtsoort", "koppelsleutel"]),
)
def test_clear_pupil_numbers_in_every_written_form_are_refused(
    written: str, before: str, left: str, right: str, after: str, field: str
) -> None:
    """Acceptance (issue #12): in any free-text field, with any text around it."""
    # Text around a number is kept apart from it by a boundary character (or none at the ends).
    left = (left or " ") if before else left
    right = (right or " ") if after else right
    text = f"{before}{left}{written}{right}{after}"
    if field == "Idempotency-Key":
        guarded: list[tuple[str, str | None]] = [(field, text)]
    else:
        fields: dict[str, str | None] = {
            "bron_brin": "12AB",
            "bron_routeringskenmerk": None,
            "overdrachtsoort": "overstapdossier",
            "zoeksleutel": None,
            "koppelsleutel": None,
        }
        guarded = guarded_fields(SessionRequest(**{**fields, field: text}))  # type: ignore[arg-type]
    with pytest.raises(e.ClearPupilNumber):
        refuse_clear_pupil_numbers(guarded)


@pytest.mark.parametrize("pgn", KNOWN_PGNS)
def test_every_grouping_of_the_known_test_numbers_is_refused(pgn: str) -> None:
    assert is_bsn(pgn) or is_onderwijsnummer(pgn)
    for sizes in compositions():
        for separator in SEPARATORS:
            written = grouped(pgn, sizes, separator)
            assert looks_like_pupil_number(f"leerling {written}, groep 8"), written
    for layout in DATE_LAYOUTS:
        for date_first in (False, True):
            written = with_date(pgn, dt.date(2011, 3, 12), layout, date_first=date_first)
            assert looks_like_pupil_number(f"key-{written}"), written


# --- … and what it leaves alone ---------------------------------------------------------------


def plain_rule(text: str) -> bool:
    """The guard before written forms: nine digits on their own, passing a test."""
    return any(
        is_bsn(m.group()) or is_onderwijsnummer(m.group())
        for m in re.finditer(r"(?<![0-9])[0-9]{9}(?![0-9])", text)
    )


def test_uuids_are_never_refused_and_hex_digests_fare_nearly_as_before() -> None:
    """A UUID (an idempotency key) is never taken for a PGN: by the plain rule about 1 in 800
    were (nine digits in their last group that pass a test). A hex digest in a free-text field
    keeps its ~1.2 % refusals; a PGN glued to a date adds about 0.01 % (15 digits: a PGN, then
    six that make a date)."""
    extra_hex = 0
    for _ in range(20_000):
        for value in (str(uuid.uuid4()), str(uuid.uuid4()).upper()):
            assert not looks_like_pupil_number(value), value
        digest = secrets.token_hex(32)
        if looks_like_pupil_number(digest) != plain_rule(digest):
            assert looks_like_pupil_number(digest)  # only ever more refusals, never fewer
            extra_hex += 1
    assert extra_hex <= 20  # 0.1 %


def test_a_uuid_inside_a_longer_key_is_never_refused_but_a_pupil_number_beside_it_is() -> None:
    """Vendors prefix their keys (``key-<uuid>``): the UUID in them is random hex all the same
    (this refused about 1 in 1,000 such keys, and a test's 10 of them now and then)."""
    for _ in range(20_000):
        key = str(uuid.uuid4())
        for value in (f"key-{key}", f"las-a:{key}", f"{key}-retry-2", f"open {key.upper()} 2"):
            assert not looks_like_pupil_number(value), value
    pgn = KNOWN_PGNS[0]
    for value in (
        f"{key} {pgn}",
        f"{pgn}-{key}",
        f"{key}{pgn}",
        f"key-{key}/{pgn[:4]}.{pgn[4:6]}.{pgn[6:]}",
    ):
        assert looks_like_pupil_number(value), value


@pytest.mark.parametrize(
    "text",
    [
        "00000007000012000001",  # a routeringskenmerk
        "00000007662460613000",  # nine digits inside a longer number
        "2025-03-14T10:15:30Z",
        "2025-03-14 10.15.30",
        "192.168.100.200",
        "v1.2.3-build.45",
        "6624.60.614",  # fails the 11-test
        "6624.60.613x",  # glued to a letter: not a number written on its own
        "66246061312132011",  # not a date after it (month 13)
        "662460613120320111",  # one digit too many for a date
        "https://las.example:8443/oso",
    ],
)
def test_the_guard_leaves_other_numbers_alone(text: str) -> None:
    assert not looks_like_pupil_number(text)
