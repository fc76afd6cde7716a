"""Judging a bron's answer before a byte reaches the doel (unit tests at the httpx seam)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from traffic_center.domain.errors import (
    DossierNietGevonden,
    DossierTooLarge,
    GeenToestemming,
    TrafficCenterError,
    UpstreamInvalidAnswer,
)
from traffic_center.domain.rules import ParentRelease
from traffic_center.exchanges.bron_answers import accept_dossier_answer
from traffic_center.relay.limits import RelayLimits
from traffic_center.relay.upstream import UpstreamClient


@pytest.fixture
async def upstream() -> AsyncIterator[UpstreamClient]:
    limits = RelayLimits(
        connect_timeout_seconds=1, read_timeout_seconds=1, max_dossier_bytes=1000, max_in_flight=2
    )
    client = UpstreamClient(limits)
    yield client
    await client.aclose()


def answer(status: int, headers: dict[str, str], body: bytes = b"<dossier/>") -> httpx.Response:
    # A stream, not content=: httpx would add a Content-Length of its own.
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


XML = {"content-type": "application/xml", "x-oso-vrijgave": "toestemming"}


async def judged(upstream: UpstreamClient, response: httpx.Response) -> TrafficCenterError | None:
    try:
        await accept_dossier_answer(upstream, response, release_needed=ParentRelease.TOESTEMMING)
    except TrafficCenterError as refused:
        return refused
    return None


async def test_a_framed_released_xml_dossier_is_accepted(upstream: UpstreamClient) -> None:
    assert await judged(upstream, answer(200, {**XML, "content-length": "10"})) is None
    assert await judged(upstream, answer(200, {**XML, "transfer-encoding": "chunked"})) is None


async def test_a_dossier_ended_only_by_closing_the_connection_is_refused(
    upstream: UpstreamClient,
) -> None:
    # Without a length or chunked framing a crash halfway would look like the whole dossier.
    refused = await judged(upstream, answer(200, XML))
    assert isinstance(refused, UpstreamInvalidAnswer)


@pytest.mark.parametrize(
    "codings", ["chunked, identity", "nonchunked", "chunked;q=1", "gzip, chunked", "identity"]
)
async def test_a_transfer_coding_other_than_chunked_alone_is_refused(
    upstream: UpstreamClient, codings: str
) -> None:
    """Unless chunked is the last coding the body ends at the close (RFC 9112 §6.3), a crash
    halfway looking like the whole dossier; and a coding besides it would reach the doel
    undone. Named in two headers it is the same list."""
    refused = await judged(upstream, answer(200, {**XML, "transfer-encoding": codings}))
    assert isinstance(refused, UpstreamInvalidAnswer)
    assert refused.detail == "a dossier's Transfer-Encoding must be chunked alone"
    in_two = [*XML.items(), ("transfer-encoding", "chunked"), ("transfer-encoding", "gzip")]
    split = httpx.Response(200, headers=in_two, stream=httpx.ByteStream(b"<dossier/>"))
    assert isinstance(await judged(upstream, split), UpstreamInvalidAnswer)
    spelled = answer(200, {**XML, "transfer-encoding": " Chunked "})
    assert await judged(upstream, spelled) is None


async def test_size_media_type_and_release_are_checked(upstream: UpstreamClient) -> None:
    assert isinstance(
        await judged(upstream, answer(200, {**XML, "content-length": "1001"})), DossierTooLarge
    )
    html = {"content-type": "text/html", "content-length": "10"}
    assert isinstance(await judged(upstream, answer(200, html)), UpstreamInvalidAnswer)
    only_inzage = {**XML, "x-oso-vrijgave": "inzage", "content-length": "10"}
    assert isinstance(await judged(upstream, answer(200, only_inzage)), GeenToestemming)


async def test_a_bron_result_code_passes_through_and_junk_does_not(
    upstream: UpstreamClient,
) -> None:
    problem = {"content-type": "application/problem+json"}
    found = await judged(upstream, answer(404, problem, b'{"code": "DossierNietGevonden"}'))
    assert isinstance(found, DossierNietGevonden)
    assert found.detail == "answered by the bron's LAS"
    nested = await judged(upstream, answer(404, problem, b"[" * 60_000))  # RecursionError bait
    assert isinstance(nested, UpstreamInvalidAnswer)
    unknown = await judged(upstream, answer(409, problem, b'{"code": "Onzin"}'))
    assert isinstance(unknown, UpstreamInvalidAnswer)
    too_long = await judged(upstream, answer(500, problem, b" " * 70_000))
    assert isinstance(too_long, UpstreamInvalidAnswer)
