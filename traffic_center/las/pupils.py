"""The reference LAS's pupils: each a PGN with a scenario, found again by its zoeksleutel v1.

A zoeksleutel cannot be turned back into a pupil number, so a bron does what a real bron LAS
does: it derives the zoeksleutel of every pupil it holds (``docs/zoeksleutel.md``) and looks
the incoming key up. The scheme key comes from the LAS's configuration; without one it is
:data:`TEST_SCHEME_KEY`, public and for test school 00YY only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.identifiers import SCHEME_KEY_BYTES, derive_zoeksleutel
from traffic_center.las.scenarios import UNKNOWN, Scenario, parse_scenario

# The public test key of zoeksleutel v1 (bytes 0x00, 0x01, …, 0x1f): the test vectors' key and
# test school 00YY's. Anyone can derive every zoeksleutel under it: never use it for a pupil.
TEST_SCHEME_KEY = bytes(range(SCHEME_KEY_BYTES))

# Test school 00YY's pupils, on every reference LAS. The first eight are the test numbers of
# the OSO domain reference (662460613 and 101211151 are also the test vectors' PGNs); the rest
# pass the 11-test and come from 99999xxxx, a range used for test BSNs.
TEST_PUPILS: Mapping[str, str] = {
    "662460613": "gereed",
    "101211151": "gereed",  # an onderwijsnummer
    "482782481": "nietgereed",
    "613543439": "geentoestemming",
    "559144428": "geeninzage",
    "991904862": "zondervrijgave",
    "388483763": "bijlagen",
    "118716943": "verouderd",
    "999990007": "hangt",
    "999990019": "grootte-1048576",
    "999990020": "afbreken-1048576",
    "999990032": "trickle-102400",
    "999990044": "liegt-1048576",
}


def pupil_with(scenario: str) -> str:
    """The PGN of test school 00YY's first pupil with this scenario, e.g. ``"gereed"``."""
    for pgn, enrolled in TEST_PUPILS.items():
        if enrolled == scenario:
            return pgn
    raise KeyError(scenario)


def parse_scheme_key(text: str) -> bytes:
    """A scheme key written as 64 hex digits (surrounding whitespace ignored)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise InvalidInput("a scheme key is written as 64 hex digits") from None
    if len(key) != SCHEME_KEY_BYTES:
        raise InvalidInput(f"a scheme key is {SCHEME_KEY_BYTES} bytes (64 hex digits)")
    return key


def pupil_zoeksleutel(scheme_key: bytes, pgn: str) -> str:
    """The pupil's zoeksleutel v1; InvalidInput for a PGN that is not 9 digits."""
    try:
        return derive_zoeksleutel(scheme_key, pgn)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


class Roster:
    """The pupils a reference LAS holds, by zoeksleutel. Thread-safe: a test enrolls pupils
    from its own thread while the server answers on another."""

    def __init__(self, scheme_key: bytes, pupils: Mapping[str, str | Scenario]) -> None:
        if len(scheme_key) != SCHEME_KEY_BYTES:
            raise InvalidInput(f"a scheme key is {SCHEME_KEY_BYTES} bytes")
        self._scheme_key = scheme_key
        self._lock = threading.Lock()
        self._scenarios: dict[str, Scenario] = {}
        for pgn, scenario in pupils.items():
            self.enroll(pgn, scenario)

    def zoeksleutel(self, pgn: str) -> str:
        return pupil_zoeksleutel(self._scheme_key, pgn)

    def enroll(self, pgn: str, scenario: str | Scenario) -> str:
        """Hold this pupil (again: the new scenario wins); returns its zoeksleutel."""
        parsed = scenario if isinstance(scenario, Scenario) else parse_scenario(scenario)
        zoeksleutel = self.zoeksleutel(pgn)
        with self._lock:
            self._scenarios[zoeksleutel] = parsed
        return zoeksleutel

    def scenario_for(self, zoeksleutel: str) -> Scenario:
        """The enrolled pupil's scenario; ONBEKEND (404) for anyone else."""
        with self._lock:
            return self._scenarios.get(zoeksleutel, UNKNOWN)
