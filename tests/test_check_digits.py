"""The pupil-number guard's check digits against a second opinion: python-stdnum's nl.bsn and
nl.onderwijsnummer. The guard may refuse more than stdnum accepts (it errs on the side of
refusing), never less."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from stdnum.nl import bsn, onderwijsnummer

from traffic_center.domain.identifiers import is_bsn, is_onderwijsnummer, looks_like_pupil_number

nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)


@given(nine_digits)
@example("000000000")
@example("662460613")
def test_the_bsn_check_agrees_with_stdnum(digits: str) -> None:
    # stdnum refuses 000000000 as a number; as a check digit sum it passes, and refusing it
    # as a zoeksleutel costs nobody anything.
    expected = bsn.is_valid(digits) or digits == "000000000"
    assert is_bsn(digits) == expected


@given(st.text(alphabet="0123456789", min_size=7, max_size=7).map(lambda rest: "10" + rest))
@example("101211151")
@example("106942846")  # check digit 6: missed before the guard was fixed
def test_the_onderwijsnummer_check_agrees_with_stdnum(digits: str) -> None:
    assert is_onderwijsnummer(digits) == onderwijsnummer.is_valid(digits)


@given(nine_digits)
def test_no_number_stdnum_accepts_gets_past_the_guard(digits: str) -> None:
    if bsn.is_valid(digits) or onderwijsnummer.is_valid(digits):
        assert looks_like_pupil_number(f"zoeksleutel {digits} …")


@given(st.integers(min_value=1, max_value=10**8 - 1))
def test_every_valid_bsn_built_from_its_first_eight_digits_is_refused(first: int) -> None:
    # Constructive: complete eight digits with the check digit stdnum computes, when one exists.
    head = f"{first:08d}"
    check = sum(int(d) * w for d, w in zip(head, range(9, 1, -1), strict=True)) % 11
    if check < 10:
        number = head + str(check)
        assert bsn.is_valid(number)
        assert is_bsn(number)
        assert looks_like_pupil_number(number)
