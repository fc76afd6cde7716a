"""OSO identifiers: BRIN, routeringskenmerk, zoeksleutel (v1), koppelsleutel, the PGN guard.

Also the host names a server certificate may name (``parse_host_name``).

The zoeksleutel v1 and the PGN guard follow ``docs/zoeksleutel.md``: the TC checks only the
form of a zoeksleutel, and never takes a digit run inside a well-formed one for a pupil number.
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable
from enum import StrEnum
from urllib.parse import urlsplit

from traffic_center.domain.errors import (
    ClearPupilNumber,
    InvalidBrin,
    InvalidEndpointKind,
    InvalidHostName,
    InvalidKoppelsleutel,
    InvalidOverdrachtsoort,
    InvalidRouteringskenmerk,
    InvalidSector,
    InvalidSessieId,
    InvalidUrl,
    InvalidZoeksleutel,
)

# Error details name what is wrong, never the rejected value: it may be a pupil's data, and
# an error body or log line is no place for it (design.md, "Non-negotiables" 2 and 6).
_BRIN = re.compile(r"[0-9]{2}[A-Z]{2}")
_ROUTERINGSKENMERK = re.compile(r"[0-9]{20}")
# Zoeksleutel v1: 32 bytes as unpadded base64url, so 43 characters; the last one carries only
# 4 data bits (43 × 6 = 258), so it is one of the 16 characters whose low 2 bits are zero.
# Exactly one spelling per key: the TC compares keys by their HMAC, never by decoding them.
_ZOEKSLEUTEL = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
ZOEKSLEUTEL_PATTERN = f"^{_ZOEKSLEUTEL.pattern}$"  # the same, anchored, for JSON Schema
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# What vendors sent before v1: a hex digest (MD5, SHA-1, SHA-256 …). Digits in it are chance.
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{32,}")
ZOEKSLEUTEL_LENGTH = 43
# The derivation's domain separation: a key made for another purpose never equals a zoeksleutel.
ZOEKSLEUTEL_V1_LABEL = b"oso-zoeksleutel-v1"
SCHEME_KEY_BYTES = 32
_PGN = re.compile(r"[0-9]{9}")
KOPPELSLEUTEL_PATTERN = "^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$"
_KOPPELSLEUTEL = re.compile(KOPPELSLEUTEL_PATTERN.strip("^$"))
# A clear PGN is nine digits; inside a longer digit run it is part of another number.
_NINE_DIGITS = re.compile(r"(?<![0-9])[0-9]{9}(?![0-9])")
_DIGIT_RUN = re.compile(r"[0-9]+")
# A UUID in its canonical form: the usual Idempotency-Key, often with a prefix. Random hex, so
# its last group holds nine digits in a row now and then (about 1 in 800 pass the 11-test).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# How people group a written PGN: 1234.56.782, 123 456 782, 123-456-782 (one separator kind).
_GROUP_SEPARATORS = frozenset(" .-\u00a0")
# A PGN glued to a date (ddmmyy, yymmdd, ddmmyyyy, yyyymmdd): 15 or 17 digits in one run.
_DATE_LENGTHS = (6, 8)
# RFC 1123 §2.1 host name labels: letters, digits and inner hyphens, 1 to 63 characters; a name
# of at most 253 (RFC 1035 §2.3.4, without the final dot).
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_HOST_NAME = 253


class Sector(StrEnum):
    PO = "PO"
    VO = "VO"
    SO = "SO"
    VSO = "VSO"
    SBO = "SBO"
    PRO = "PRO"
    SWV = "SWV"


class Overdrachtsoort(StrEnum):
    OVERSTAPDOSSIER = "overstapdossier"
    OVERDRACHT_BINNEN_BRIN = "overdrachtbinnenbrin"
    SWV_DOSSIER = "swv-dossier"


class EndpointKind(StrEnum):
    OV = "OV"  # overstap: exchanges transfer dossiers
    SWV = "SWV"  # samenwerkingsverband feedback flow


def parse_brin(value: str) -> str:
    if not _BRIN.fullmatch(value):
        raise InvalidBrin("not a BRIN: two digits and two upper-case letters")
    return value


def parse_routeringskenmerk(value: str) -> str:
    if not _ROUTERINGSKENMERK.fullmatch(value):
        raise InvalidRouteringskenmerk("not a routeringskenmerk: 20 digits")
    return value


def parse_zoeksleutel(value: str) -> str:
    """A zoeksleutel v1, checked for its form only (``docs/zoeksleutel.md``).

    A well-formed key is never run through the PGN guard: a digit run inside 32 random bytes
    is chance, not a pupil number; nor is a hex digest (the form before v1), which is simply
    malformed. Any other malformed value that holds a clear PGN is refused as such
    (``PgnNietToegestaan``): that doel is sending pupil numbers, and should hear it.
    """
    if _ZOEKSLEUTEL.fullmatch(value):
        return value
    if not _HEX_DIGEST.fullmatch(value):
        refuse_clear_pupil_number(value, field="zoeksleutel")
    raise InvalidZoeksleutel(_zoeksleutel_fault(value))


def _zoeksleutel_fault(value: str) -> str:
    """What is wrong with a zoeksleutel, without repeating the value (it may be a PGN)."""
    if len(value) == 44 and value.endswith("="):
        return "the zoeksleutel ends in '=': send it without base64 padding"
    if not _BASE64URL.fullmatch(value):
        return "a zoeksleutel holds only A-Z, a-z, 0-9, '-' and '_' (base64url, not '+' or '/')"
    if _HEX_DIGEST.fullmatch(value):
        return "the zoeksleutel looks like a hex digest: v1 is 32 bytes of HMAC in base64url"
    if len(value) != ZOEKSLEUTEL_LENGTH:
        return f"a zoeksleutel is {ZOEKSLEUTEL_LENGTH} characters, not {len(value)}"
    return "the last character does not end a base64url encoding of exactly 32 bytes"


def derive_zoeksleutel(scheme_key: bytes, pgn: str) -> str:
    """Zoeksleutel v1: base64url(HMAC-SHA256(K, "oso-zoeksleutel-v1" || 0x00 || PGN)), unpadded.

    Computed by the LAS sides only; the TC never sees ``pgn`` or ``scheme_key``. Raises
    ValueError for a key that is not 32 bytes or a PGN that is not 9 ASCII digits.
    """
    if len(scheme_key) != SCHEME_KEY_BYTES:
        raise ValueError(f"the scheme key is {SCHEME_KEY_BYTES} bytes, not {len(scheme_key)}")
    if not _PGN.fullmatch(pgn):
        raise ValueError("a PGN (BSN or onderwijsnummer) is 9 ASCII digits")
    message = ZOEKSLEUTEL_V1_LABEL + b"\x00" + pgn.encode("ascii")
    digest = hmac.new(scheme_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def parse_koppelsleutel(value: str) -> str:
    if not _KOPPELSLEUTEL.fullmatch(value):
        raise InvalidKoppelsleutel()
    return value


def new_koppelsleutel() -> str:
    """A fresh koppelsleutel: an upper-case GUID (OSO), random (UUID version 4)."""
    return str(uuid.uuid4()).upper()


def parse_sessie_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidSessieId("not a UUID") from None
    if str(parsed) != value.lower():
        raise InvalidSessieId("not a UUID in its canonical form (32 hex digits, with hyphens)")
    return str(parsed)


def parse_sector(value: str) -> Sector:
    try:
        return Sector(value)
    except ValueError:
        allowed = ", ".join(s.value for s in Sector)
        raise InvalidSector(f"not a sector; use one of {allowed}") from None


def parse_endpoint_kind(value: str) -> EndpointKind:
    try:
        return EndpointKind(value)
    except ValueError:
        raise InvalidEndpointKind("not an endpoint kind; use OV or SWV") from None


def parse_url(value: str) -> str:
    """An endpoint's base URL: absolute https, no query or fragment (we append paths)."""
    parsed = urlsplit(value)
    if parsed.scheme != "https" or not parsed.hostname or parsed.query or parsed.fragment:
        raise InvalidUrl("not an absolute https URL without query or fragment")
    return value.rstrip("/")


def parse_host_name(value: str) -> str:
    """A DNS name for a server certificate, in the form certificates hold: lower-case ASCII,
    an IDN as its A-labels (``ëxample.nl`` → ``xn--xample-ova.nl``, IDNA 2003 as Python's
    codec has it). An admin's input, not a pupil's: the refusal may quote it.

    No wildcards: a certificate names each host it serves, so one stolen key is one host.
    """
    if "*" in value:
        raise InvalidHostName(f"{value!r}: wildcards are not issued; give each host its own --host")
    try:
        name = value.encode("idna").decode("ascii").lower()
    except UnicodeError:
        name = ""  # a label over 63 characters, or not encodable: refused below
    labels = name.split(".")
    if len(name) > _MAX_HOST_NAME or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidHostName(f"{value!r} is not a host name (RFC 1123) or an IP address")
    # RFC 3696 §2: no top-level domain is all digits, so 256.1.1.1 is a bad address, not a name.
    if labels[-1].isdigit():
        raise InvalidHostName(f"{value!r} is not a valid IP address")
    return name


def parse_overdrachtsoort(value: str) -> Overdrachtsoort:
    try:
        return Overdrachtsoort(value)
    except ValueError:
        allowed = ", ".join(s.value for s in Overdrachtsoort)
        raise InvalidOverdrachtsoort(f"unknown overdrachtsoort; use one of {allowed}") from None


def is_bsn(digits: str) -> bool:
    """The BSN eleven-test: (9·d1 + … + 2·d8 − d9) mod 11 == 0."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    return (_weighted(digits) - int(digits[8])) % 11 == 0


def is_onderwijsnummer(digits: str) -> bool:
    """The onderwijsnummer test: starts with 1 and (9·d1 + … + 2·d8 − d9) mod 11 == 5.

    (Not ``… mod 11 == d9 + 5``: that misses every number whose check digit is 6 to 9.)
    """
    if len(digits) != 9 or not digits.isdigit() or digits[0] != "1":
        return False
    return (_weighted(digits) - int(digits[8])) % 11 == 5


def _weighted(digits: str) -> int:
    """9·d1 + 8·d2 + … + 2·d8: the weighted sum both check-digit tests share."""
    return sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))


def is_pupil_number(digits: str) -> bool:
    return is_bsn(digits) or is_onderwijsnummer(digits)


def looks_like_pupil_number(text: str) -> bool:
    """Whether ``text`` holds a clear PGN in one of its usual written forms.

    - nine digits on their own (inside a longer digit run they are part of another number);
    - nine digits in groups with one kind of separator: ``1234.56.782``, ``123 456 782``,
      ``123-456-782``, standing alone (not glued to letters or digits: a UUID's groups are
      never taken for one);
    - nine digits glued to a date before or after them: ``66246061312032011``.

    A UUID in its canonical form never holds one: it is random hex. So a UUID is left out
    before the rest is read, whether it is the whole text or part of it (``order-<uuid>``):
    a vendor's prefixed UUID keys were refused about once in 1,000 otherwise.
    """
    # Not a digit, not a group separator: what stood either side of a UUID stays apart.
    text = _UUID.sub("/", text)
    if any(is_pupil_number(m.group()) for m in _NINE_DIGITS.finditer(text)):
        return True
    runs = [(m.start(), m.end()) for m in _DIGIT_RUN.finditer(text)]
    return _has_grouped_pupil_number(text, runs) or any(
        _is_pupil_number_with_date(text[start:end]) for start, end in runs
    )


def _has_grouped_pupil_number(text: str, runs: list[tuple[int, int]]) -> bool:
    for first, (start, _) in enumerate(runs):
        if start > 0 and text[start - 1].isalnum():
            continue
        digits, separator = "", None
        for index in range(first, len(runs)):
            run_start, run_end = runs[index]
            if index > first:
                gap = text[runs[index - 1][1] : run_start]
                if len(gap) != 1 or gap not in _GROUP_SEPARATORS or separator not in (None, gap):
                    break
                separator = gap
            digits += text[run_start:run_end]
            if len(digits) >= 9:
                alone = run_end == len(text) or not text[run_end].isalnum()
                if len(digits) == 9 and index > first and alone and is_pupil_number(digits):
                    return True
                break
    return False


def _is_pupil_number_with_date(run: str) -> bool:
    for date_length in _DATE_LENGTHS:
        if len(run) == 9 + date_length and (
            (is_pupil_number(run[:9]) and _is_date(run[9:]))
            or (is_pupil_number(run[-9:]) and _is_date(run[:-9]))
        ):
            return True
    return False


def _is_date(digits: str) -> bool:
    """ddmmyy or yymmdd (any century), ddmmyyyy or yyyymmdd (1900-2099): a real calendar day."""
    if len(digits) == 6:
        day_first = (2000 + int(digits[4:]), int(digits[2:4]), int(digits[:2]))
        year_first = (2000 + int(digits[:2]), int(digits[2:4]), int(digits[4:]))
    else:
        day_first = (int(digits[4:]), int(digits[2:4]), int(digits[:2]))
        year_first = (int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    return any(_is_day(*ymd) for ymd in (day_first, year_first))


def _is_day(year: int, month: int, day: int) -> bool:
    if not 1900 <= year <= 2099:
        return False
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


def refuse_clear_pupil_number(value: str, *, field: str) -> None:
    """Domain rule 7: no clear PGN may reach the TC, in any field."""
    if looks_like_pupil_number(value):
        raise ClearPupilNumber(f"field {field!r} holds what looks like a BSN or onderwijsnummer")


def refuse_clear_pupil_numbers(fields: Iterable[tuple[str, object]]) -> None:
    for name, value in fields:
        if isinstance(value, str):
            refuse_clear_pupil_number(value, field=name)
