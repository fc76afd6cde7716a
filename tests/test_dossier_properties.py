"""The generated dossiers, by property: for any size, marker and chunking, exactly ``size``
bytes, the digest of those bytes, spans that agree with the whole, and the documented shape
(an XML head, whole base64 quanta, 0-3 line breaks, the tail; a bare prefix when too small)."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from traffic_center.las.dossier import (
    GeneratedDossier,
    generated_chunks,
    generated_digest,
    generated_dossier,
)

# Up to a few chunks of 64 KiB: enough to cross every boundary, small enough to hash often.
sizes = st.integers(min_value=0, max_value=300_000)
huge_sizes = st.integers(min_value=0, max_value=10**12)
# Markers as scenario keys carry them, XML's special characters included.
markers = st.none() | st.text(alphabet="abcXYZ0189-_ <&>'\"", min_size=1, max_size=24)
chunkings = st.integers(min_value=1, max_value=200_000)

PROPERTY = settings(max_examples=60, deadline=None)


def skeleton_of(marker: str | None) -> bytes:
    """Head and tail without filler: what a too-small dossier is a prefix of."""
    roomy = generated_dossier(10**6, marker)
    return roomy.head + roomy.tail.lstrip(b"\n")


@PROPERTY
@given(size=sizes, marker=markers, chunk_bytes=chunkings)
def test_chunks_make_exactly_size_bytes_aligned_to_the_chunking(
    size: int, marker: str | None, chunk_bytes: int
) -> None:
    chunks = list(generated_chunks(size, marker, chunk_bytes=chunk_bytes))
    assert sum(len(c) for c in chunks) == size
    assert len(chunks) == -(-size // chunk_bytes)  # ceil
    assert all(len(c) == chunk_bytes for c in chunks[:-1])
    assert all(chunks)  # no empty chunk


@PROPERTY
@given(size=sizes, marker=markers, chunk_bytes=chunkings)
def test_the_digest_is_of_the_bytes_whatever_the_chunking(
    size: int, marker: str | None, chunk_bytes: int
) -> None:
    whole = b"".join(generated_chunks(size, marker, chunk_bytes=chunk_bytes))
    assert generated_digest(size, marker) == hashlib.sha256(whole).hexdigest()
    assert whole == b"".join(generated_chunks(size, marker))


@PROPERTY
@given(size=sizes, marker=markers, data=st.data())
def test_any_span_and_any_limit_agree_with_the_whole(
    size: int, marker: str | None, data: st.DataObject
) -> None:
    dossier = generated_dossier(size, marker)
    whole = b"".join(dossier.chunks())
    start = data.draw(st.integers(min_value=0, max_value=size), label="start")
    end = data.draw(st.integers(min_value=start, max_value=size), label="end")
    assert dossier.span(start, end) == whole[start:end]
    limit = data.draw(st.integers(min_value=0, max_value=size + 10), label="limit")
    assert b"".join(dossier.chunks(4096, limit=limit)) == whole[:limit]


@PROPERTY
@given(size=sizes, marker=markers)
def test_the_shape_is_head_base64_quanta_line_breaks_tail_or_a_prefix(
    size: int, marker: str | None
) -> None:
    dossier = generated_dossier(size, marker)
    whole = b"".join(dossier.chunks())
    skeleton = skeleton_of(marker)
    if size < len(skeleton):
        assert (dossier.head, dossier.tail) == (whole, b"")
        assert whole == skeleton[:size]
        return
    tail = dossier.tail.lstrip(b"\n")
    assert whole.startswith(dossier.head)
    assert whole.endswith(dossier.tail)
    assert dossier.head + tail == skeleton
    assert len(dossier.tail) - len(tail) <= 3  # the line breaks that fill a partial quantum
    filler = whole[len(dossier.head) : size - len(dossier.tail)]
    assert len(filler) % 4 == 0
    assert base64.b64decode(filler, validate=True) is not None
    if marker is not None:
        assert escape(marker).encode() in dossier.head


@settings(max_examples=20, deadline=None)
@given(size=st.integers(min_value=0, max_value=200_000), marker=markers)
def test_a_dossier_roomy_enough_is_well_formed_xml(size: int, marker: str | None) -> None:
    size += len(skeleton_of(marker))
    ET.fromstring(b"".join(generated_chunks(size, marker)))


@PROPERTY
@given(size=huge_sizes, data=st.data())
def test_spans_of_a_huge_dossier_join_without_building_it(size: int, data: st.DataObject) -> None:
    dossier: GeneratedDossier = generated_dossier(size)
    a = data.draw(st.integers(min_value=0, max_value=size), label="a")
    b = data.draw(st.integers(min_value=a, max_value=min(size, a + 300_000)), label="b")
    c = data.draw(st.integers(min_value=b, max_value=min(size, b + 300_000)), label="c")
    assert len(dossier.span(a, c)) == c - a
    assert dossier.span(a, b) + dossier.span(b, c) == dossier.span(a, c)
