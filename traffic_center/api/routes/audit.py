"""GET /v1/audit: a party reads the audit records of its own endpoint, page by page."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Query

from traffic_center.api.identity import PeerDep, ServicesDep
from traffic_center.api.responses import EXCHANGE_ERRORS, problem_responses
from traffic_center.api.schemas import DATE_TIME, AuditPage, AuditRecordOut
from traffic_center.domain import errors as e
from traffic_center.domain.audit import ChainedRecord
from traffic_center.exchanges.service import AuditQuery

router = APIRouter(tags=["audit"])

MAX_PAGE = 500
# A cursor is base64url("audit:" + 1 to 18 digits), unpadded: "audit:" is YXVkaXQ6, each
# three digits four characters, one or two trailing digits two or three (canonical: no
# stray low bits). The server checks this pattern before decoding, so the contract and the
# server refuse the same strings.
_FIRST = "([MN][DTjz]|O[DT])"  # the first digit, and the high half of the next byte
_THREE = f"{_FIRST}[AEIMQUYcgk][w-z0-5]"
CURSOR_PATTERN = (
    f"^(YXVkaXQ6(({_THREE}){{1,6}}|({_THREE}){{0,5}}([MN][AQgw]|O[AQ])"
    f"|({_THREE}){{0,5}}{_FIRST}[AEIMQUYcgk]))?$"
)
_CURSOR = re.compile(CURSOR_PATTERN)


@router.get(
    "/v1/audit",
    summary="Audit records where your endpoint is doel or bron, oldest first",
    description=(
        "Metadata only: type, parties, session and transaction ids, result, statuses, sizes, "
        "SHA-256 and timestamps, with each record's place in the hash chain. Page with "
        "`cursor` (from `next_cursor`); `since` is inclusive, `until` exclusive."
    ),
    response_model=AuditPage,
    responses=problem_responses(*EXCHANGE_ERRORS, e.InvalidCursor, e.InvalidPeriod),
)
async def read_audit(
    peer: PeerDep,
    svc: ServicesDep,
    since: Annotated[str | None, Query(max_length=64, json_schema_extra=DATE_TIME)] = None,
    until: Annotated[
        str | None,
        Query(
            max_length=64,
            # since < until, which JSON Schema cannot say; the examples at least keep it
            description="exclusive; after `since` when both are given (else OngeldigePeriode)",
            json_schema_extra={**DATE_TIME, "examples": ["2026-02-28T08:00:00Z"]},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=64,
            description="a `next_cursor` this Traffic Center handed out; empty: the first page",
            json_schema_extra={"pattern": CURSOR_PATTERN, "examples": ["YXVkaXQ6MTAw"]},
        ),
    ] = None,
) -> AuditPage:
    start, end = period(since, until)
    query = AuditQuery(
        since=start,
        until=end,
        after_id=decode_cursor(cursor) if cursor else 0,
        limit=limit + 1,  # one more tells whether there is a next page
    )
    found = await svc.exchanges.read_audit(peer, query)
    page = list(found[:limit])
    more = len(found) > limit
    return AuditPage(
        records=[_out(item) for item in page],
        next_cursor=encode_cursor(page[-1].id) if more and page else None,
    )


def encode_cursor(record_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if not _CURSOR.fullmatch(cursor):
        raise e.InvalidCursor()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "audit" or not number.isdigit() or len(number) > 18:  # fits a BIGINT
            raise ValueError(cursor)
        return int(number)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise e.InvalidCursor() from None


def period(since: str | None, until: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    start, end = _moment("since", since), _moment("until", until)
    if start is not None and end is not None and start >= end:
        raise e.InvalidPeriod("since must be before until")
    return start, end


# RFC 3339 §5.6 date-time: the time offset is part of the grammar. A moment without one is
# refused rather than guessed (UTC? Amsterdam?), and so is a bare date.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _moment(name: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    if not _RFC3339.fullmatch(value):
        raise e.InvalidPeriod(
            f"{name} is not an RFC 3339 date-time with a time zone (e.g. 2026-01-31T08:00:00Z)"
        )
    try:
        return dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise e.InvalidPeriod(f"{name} is not a date and time that exists") from None


# Wire names: OSO nouns in Dutch (CHANGELOG.md lists the renames).
_WIRE_NAMES = {"transaction_id": "transactie_id", "result": "resultaat"}
_NOT_ON_THE_WIRE = ("node_id",)  # infrastructure, not the parties' business


def _out(item: ChainedRecord) -> AuditRecordOut:
    values = {
        _WIRE_NAMES.get(name, name): value
        for name, value in dataclasses.asdict(item.record).items()
        if name not in _NOT_ON_THE_WIRE
    }
    values["type"] = item.record.type.value
    values["phase"] = item.record.phase.value
    return AuditRecordOut(id=item.id, prev_hash=item.prev_hash, hash=item.hash, **values)
