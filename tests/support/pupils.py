"""Test pupils: valid pupil numbers (PGNs) to derive zoeksleutels v1 from, never sent in the clear."""

from __future__ import annotations

import itertools
import secrets

from traffic_center.domain.identifiers import derive_zoeksleutel
from traffic_center.las.pupils import TEST_SCHEME_KEY

# Unique within a test process: a counter behind the 11-test, from a random start per process.
_serials = itertools.count(secrets.randbelow(500_000))


def weighted(eight_digits: str) -> int:
    return sum(int(d) * w for d, w in zip(eight_digits, range(9, 1, -1), strict=True))


def bsn_from(eight_digits: str) -> str | None:
    """The BSN starting with these eight digits, if one passes the 11-test."""
    check = weighted(eight_digits) % 11
    return eight_digits + str(check) if check <= 9 else None


def onderwijsnummer_from(eight_digits: str) -> str | None:
    """The onderwijsnummer starting with these eight digits (the first must be 1), if any."""
    check = weighted(eight_digits) % 11 - 5
    if eight_digits[0] != "1" or not 0 <= check <= 9:
        return None
    return eight_digits + str(check)


def new_pgn() -> str:
    """A BSN not handed out before in this process (99xxxxxxx: kept apart from real ones)."""
    while True:
        pgn = bsn_from(f"99{next(_serials):06d}")
        if pgn is not None:
            return pgn


def zoeksleutel_of(pgn: str = "662460613") -> str:
    """A pupil's zoeksleutel under the public test key."""
    return derive_zoeksleutel(TEST_SCHEME_KEY, pgn)
