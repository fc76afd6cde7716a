"""Judging what a bron's LAS answered to a documentRequest, before a byte reaches the doel."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import json

import httpx

from traffic_center.domain.errors import (
    DossierTooLarge,
    GeenInzage,
    GeenToestemming,
    TrafficCenterError,
    UpstreamInvalidAnswer,
    bron_answer_classes,
)
from traffic_center.domain.las_contract import RELEASE_HEADER
from traffic_center.domain.rules import ParentRelease, release_satisfies
from traffic_center.relay.headers import media_type, transfer_codings
from traffic_center.relay.upstream import UpstreamClient

_DOSSIER_TYPES = ("application/xml", "text/xml")
_PROBLEM_TYPES = ("application/problem+json", "application/json")


async def accept_dossier_answer(
    upstream: UpstreamClient, response: httpx.Response, *, release_needed: ParentRelease | None
) -> None:
    """Raise unless the answer is a dossier we may stream: XML, within the limit, released."""
    if response.status_code != httpx.codes.OK:
        raise await refusal_from(upstream, response)
    if media_type(response) not in _DOSSIER_TYPES:
        raise UpstreamInvalidAnswer(f"a dossier must be XML, not {media_type(response)!r}")
    declared = response.headers.get("content-length")
    codings = transfer_codings(response.headers)
    if codings and codings != ["chunked"]:
        # Ended by the close (chunked not last) or coded besides (gzip...: it would reach the
        # doel undone, the header being hop by hop). The bron's value is not quoted.
        raise UpstreamInvalidAnswer("a dossier's Transfer-Encoding must be chunked alone")
    if declared is None and not codings:
        # Ended by closing the connection: a bron crashing halfway would look like a whole
        # dossier. Only a declared length or chunked framing tells a cut-off stream apart.
        raise UpstreamInvalidAnswer("a dossier needs Content-Length or chunked encoding")
    limit = upstream.limits.max_dossier_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DossierTooLarge(f"the bron announces {declared} bytes; the limit is {limit}")
    # Rule 8: no overstapdossier leaves without the parents' release the bron attests.
    if release_needed is not None and not release_satisfies(
        release_needed, response.headers.get(RELEASE_HEADER, "")
    ):
        refusal = GeenToestemming if release_needed is ParentRelease.TOESTEMMING else GeenInzage
        raise refusal(f"the bron did not attest {release_needed.value} ({RELEASE_HEADER})")


async def refusal_from(upstream: UpstreamClient, response: httpx.Response) -> TrafficCenterError:
    """A bron's result code passes through as that code; anything else is a bad answer."""
    answer = await upstream.read_answer(response)
    code = None
    if media_type(response) in _PROBLEM_TYPES:
        try:
            parsed = json.loads(answer)
            code = parsed.get("code") if isinstance(parsed, dict) else None
        except (ValueError, RecursionError):  # not JSON, or absurdly nested
            code = None
    known = bron_answer_classes().get(code) if isinstance(code, str) else None
    if known is not None:
        # Our own title and detail: the bron's text might carry a pupil's data.
        return known("answered by the bron's LAS")
    return UpstreamInvalidAnswer(f"the bron answered HTTP {response.status_code}")
