"""The dossiers the reference LAS serves: realistic fictitious ones and generated ones of any size.

Both are OSO gegevensset 2019.1 dossiers (:mod:`traffic_center.las.gegevensset` writes all
but the attachments); both are made large by attachments, streamed between that skeleton's
two halves.

Every dossier is produced as an iterator of byte chunks, so a server can stream it and a test
can hash it without either holding the whole body. Everything is deterministic: the same
arguments give the same bytes, so a test can compute the SHA-256 the doel must receive.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from xml.sax.saxutils import escape

from traffic_center.domain.identifiers import Overdrachtsoort, Sector
from traffic_center.domain.rules import ParentRelease
from traffic_center.las.gegevensset import DossierSpec, skeleton
from traffic_center.las.scenarios import TEST_BRIN

# Streaming granularity: large enough for throughput, small enough to bound memory per stream.
CHUNK_BYTES = 64 * 1024
# base64.encodebytes writes 76-character lines (RFC 2045 §6.8), 57 input bytes each; encoding
# whole multiples of 57 keeps the slices' output identical to encoding the attachment at once.
_BASE64_SLICE = 57 * 1024
# A fixed timestamp inside the attachments' ZIPs, so the bytes never depend on the clock.
_ZIP_TIMESTAMP = (2025, 2, 20, 9, 30, 0)
# The sized scenarios are test school 00YY's, whichever endpoint serves them; a PO school's
# dossier for a VO school unless the bron says otherwise (the pair the demo and tests use).
GENERATED_SPEC = DossierSpec(
    brin=TEST_BRIN,
    bron_sector=Sector.PO,
    doel_sector=Sector.VO,
    overdrachtsoort=Overdrachtsoort.OVERSTAPDOSSIER,
    release=ParentRelease.INZAGE,
    full=False,
)


@dataclass(frozen=True, slots=True)
class Measured:
    size: int
    sha256: str  # hex


def measure(chunks: Iterable[bytes]) -> Measured:
    """Size and SHA-256 of a chunk stream, in constant memory."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return Measured(size, digest.hexdigest())


# --- generated dossiers of an exact size -------------------------------------------------------


@functools.cache
def _filler_block() -> bytes:
    """One chunk of base64 text, repeated through the body of every generated dossier.

    Precomputed once so a generated stream yields the same object again and again: the
    generator then runs at memory speed (far above the 500 MB/s the relay tests need).
    """
    seed = hashlib.shake_256(b"oso-traffic-center/las/generated-dossier")
    return base64.b64encode(seed.digest(CHUNK_BYTES * 3 // 4))


@dataclass(frozen=True, slots=True)
class GeneratedDossier:
    """Exactly ``size`` bytes: an XML head, base64 filler, an XML tail.

    When ``size`` is smaller than head plus tail, the document is the first ``size`` bytes of
    that skeleton (``tail`` is then empty and ``head`` holds them all).
    """

    size: int
    head: bytes
    tail: bytes

    def chunks(
        self, chunk_bytes: int = CHUNK_BYTES, *, limit: int | None = None
    ) -> Iterator[bytes]:
        """The document (or its first ``limit`` bytes) in chunks aligned to ``chunk_bytes``."""
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        end = self.size if limit is None else min(limit, self.size)
        for start in range(0, end, chunk_bytes):
            yield self.span(start, min(start + chunk_bytes, end))

    def span(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the document."""
        filler_start, filler_end = len(self.head), self.size - len(self.tail)
        parts = []
        if start < filler_start:
            parts.append(self.head[start : min(end, filler_start)])
        if max(start, filler_start) < min(end, filler_end):
            parts.append(_filler(max(start, filler_start), min(end, filler_end)))
        if end > filler_end:
            parts.append(self.tail[max(start, filler_end) - filler_end : end - filler_end])
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _filler(start: int, end: int) -> bytes:
    """The filler at absolute offsets [start, end): the block repeated from offset 0."""
    block = _filler_block()
    offset, length = start % len(block), end - start
    if offset == 0 and length == len(block):
        return block  # the common case: no copy at all
    if offset + length <= len(block):
        return block[offset : offset + length]
    pieces, position = [], start
    while position < end:
        offset = position % len(block)
        piece = block[offset : offset + (end - position)]
        pieces.append(piece)
        position += len(piece)
    return b"".join(pieces)


def generated_dossier(
    size: int, marker: str | None = None, *, spec: DossierSpec | None = None
) -> GeneratedDossier:
    """The dossier ``00YY-grootte-<size>[-m<marker>]`` serves.

    A lean OSO dossier of test school 00YY (only the categories its profile requires, plus
    ``bijlagedocs``) whose one attachment is ``size`` bytes' worth of base64 filler. The
    filler is a base64 text, not a ZIP: the XSD types ``bestandsinhoud`` as a string and a ZIP
    of a gigabyte would need a CRC over all of it before the first byte could be sent.
    """
    if size < 0:
        raise ValueError("size must not be negative")
    head, tail = _generated_skeleton(spec or GENERATED_SPEC, marker)
    filler = size - len(head) - len(tail)
    if filler < 0:
        return GeneratedDossier(size, (head + tail)[:size], b"")
    # Whole base64 quanta only; the 0-3 bytes left over are line breaks (which decoders skip).
    return GeneratedDossier(size, head, b"\n" * (filler % 4) + tail)


@functools.lru_cache(maxsize=64)
def _generated_skeleton(spec: DossierSpec, marker: str | None) -> tuple[bytes, bytes]:
    head, tail = skeleton(dataclasses.replace(spec, full=False))
    kenmerk = f", kenmerk {escape(marker)}" if marker else ""
    document = (
        "        <document>\n"
        "          <bestandsnaam>vulling.txt</bestandsnaam>\n"
        f"          <omschrijving>Vulling van het testdossier{kenmerk}</omschrijving>\n"
        "          <bestandsinhoud>"
    )
    return (head + document).encode(), ("</bestandsinhoud>\n        </document>\n" + tail).encode()


def generated_chunks(
    size: int,
    marker: str | None = None,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    spec: DossierSpec | None = None,
) -> Iterator[bytes]:
    return generated_dossier(size, marker, spec=spec).chunks(chunk_bytes)


def generated_digest(
    size: int, marker: str | None = None, *, spec: DossierSpec | None = None
) -> str:
    """The SHA-256 (hex) of the generated dossier, without a server."""
    return measure(generated_chunks(size, marker, spec=spec)).sha256


# --- realistic dossiers ------------------------------------------------------------------------


class DossierTemplate(StrEnum):
    STANDARD = "standaard"  # about 170 kB, three attachments
    ATTACHMENTS = "bijlagen"  # about 6 MB, thirty attachments


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    description: str
    size: int  # bytes of the document inside the ZIP


_STANDARD_ATTACHMENTS = (
    Attachment("groepsplan-rekenen.pdf", "Groepsplan rekenen", 32_000),
    Attachment("verslag-intern-begeleider.pdf", "Verslag van de intern begeleider", 40_000),
    Attachment("rapport-groep-7.pdf", "Rapport groep 7", 28_000),
)
_EXTRA_ATTACHMENTS = tuple(
    Attachment(f"scan-rapport-{n:02d}.pdf", f"Gescand rapport {n}", 160_000) for n in range(1, 28)
)

_ATTACHMENTS: dict[DossierTemplate, tuple[Attachment, ...]] = {
    DossierTemplate.STANDARD: _STANDARD_ATTACHMENTS,
    DossierTemplate.ATTACHMENTS: _STANDARD_ATTACHMENTS + _EXTRA_ATTACHMENTS,
}


def realistic_dossier(template: DossierTemplate, spec: DossierSpec) -> Iterator[bytes]:
    """A fictitious pupil's dossier; one attachment at a time is in memory, never the whole."""
    head, tail = skeleton(spec)
    yield head.encode()
    for attachment in _ATTACHMENTS[template]:
        yield from _attachment_element(attachment)
    yield tail.encode()


@functools.lru_cache(maxsize=32)
def measured_dossier(template: DossierTemplate, spec: DossierSpec) -> Measured:
    """Size and digest of :func:`realistic_dossier`, computed once per process and arguments."""
    return measure(realistic_dossier(template, spec))


def _attachment_element(attachment: Attachment) -> Iterator[bytes]:
    """One ``document``: the file zipped, then base64 (OSO: "Base64 gecodeerd ZIP-bestand")."""
    archive = _zipped(attachment)
    yield (
        "        <document>\n"
        f"          <bestandsnaam>{escape(attachment.name)}</bestandsnaam>\n"
        f"          <omschrijving>{escape(attachment.description)}</omschrijving>\n"
        "          <bestandsinhoud>\n"
    ).encode()
    for start in range(0, len(archive), _BASE64_SLICE):
        yield base64.encodebytes(archive[start : start + _BASE64_SLICE])
    yield b"          </bestandsinhoud>\n        </document>\n"


def _zipped(attachment: Attachment) -> bytes:
    """A ZIP holding one fake PDF: deterministic, stored (so its size is predictable)."""
    preamble = f"%PDF-1.4\n% fictief testdocument: {attachment.name}\n".encode()
    noise = hashlib.shake_256(attachment.name.encode()).digest(attachment.size - len(preamble))
    info = zipfile.ZipInfo(attachment.name, date_time=_ZIP_TIMESTAMP)
    info.create_system = 3  # Unix, whatever the machine: identical bytes everywhere
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(info, preamble + noise)
    return buffer.getvalue()
