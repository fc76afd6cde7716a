"""Header hygiene: what the relay sends upstream, and which answer headers reach the doel."""

from __future__ import annotations

import httpx

from traffic_center.domain.las_contract import RELEASE_HEADER

# RFC 9110 §7.6.1 and the classic list: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# End-to-end headers of a dossier answer the doel needs; everything else stays behind, so a
# LAS cannot set cookies, caching or security headers in the Traffic Center's name.
FORWARDED_ANSWER_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "last-modified", RELEASE_HEADER.lower()}
)


def forwardable_answer_headers(headers: httpx.Headers) -> dict[str, str]:
    """The bron's answer headers the doel gets: allowed, not hop-by-hop, not named by Connection."""
    named_by_connection = {
        token.strip().lower() for token in headers.get("connection", "").split(",") if token.strip()
    }
    return {
        name: value
        for name, value in headers.items()
        if name in FORWARDED_ANSWER_HEADERS
        and name not in HOP_BY_HOP
        and name not in named_by_connection
    }


def default_request_headers(user_agent: str) -> dict[str, str]:
    """What every request upstream carries besides its own headers: only these, not httpx's
    or aiohttp's defaults (Accept, Connection...).

    ``Accept-Encoding: identity`` because the relay passes bytes through as they come and the
    SHA-256 is of those bytes; no ``Expect`` is ever sent (httpx never adds one).
    """
    return {"User-Agent": user_agent, "Accept-Encoding": "identity"}


def transfer_codings(headers: httpx.Headers) -> list[str]:
    """An answer's transfer codings in order, over every Transfer-Encoding header. A dossier
    is framed only by ``["chunked"]`` or, with none, a Content-Length: with any other list
    its end is the connection's close (RFC 9112 §6.3), which a crash halfway looks like."""
    return [coding.strip().lower() for coding in headers.get_list("transfer-encoding", True)]


def media_type(response: httpx.Response) -> str:
    """The answer's media type, lower case, without its parameters ("" when none)."""
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower()
