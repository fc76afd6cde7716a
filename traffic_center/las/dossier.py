"""The dossiers the reference LAS serves: realistic fictitious ones and generated ones of any size.

Every dossier is produced as an iterator of byte chunks, so a server can stream it and a test
can hash it without either holding the whole body. Everything is deterministic: the same
arguments give the same bytes, so a test can compute the SHA-256 the doel must receive.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from xml.sax.saxutils import escape

from traffic_center.domain.las_contract import DOSSIER_NAMESPACE

# Streaming granularity: large enough for throughput, small enough to bound memory per stream.
CHUNK_BYTES = 64 * 1024
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
# base64.encodebytes writes 76-character lines (RFC 2045 §6.8), 57 input bytes each; encoding
# whole multiples of 57 keeps the slices' output identical to encoding the attachment at once.
_BASE64_SLICE = 57 * 1024
# A fixed timestamp inside the attachments' ZIPs, so the bytes never depend on the clock.
_ZIP_TIMESTAMP = (2025, 2, 20, 9, 30, 0)


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


def generated_dossier(size: int, marker: str | None = None) -> GeneratedDossier:
    """The dossier ``00YY-grootte-<size>[-m<marker>]`` serves."""
    if size < 0:
        raise ValueError("size must not be negative")
    head, tail = _generated_skeleton(size, marker)
    if size < len(head) + len(tail):
        return GeneratedDossier(size, (head + tail)[:size], b"")
    return GeneratedDossier(size, head, tail)


def _generated_skeleton(size: int, marker: str | None) -> tuple[bytes, bytes]:
    kenmerk = f"<kenmerk>{escape(marker)}</kenmerk>" if marker else ""
    head = (
        f'{_XML_DECLARATION}<dossier xmlns="{DOSSIER_NAMESPACE}">\n'
        f"<metadata><pakket>OSO-testdossier</pakket><grootte>{size}</grootte>{kenmerk}"
        "</metadata>\n<bijlagen><bijlage><naam>vulling.bin</naam><inhoud>"
    )
    tail = "</inhoud></bijlage></bijlagen>\n</dossier>\n"
    return head.encode(), tail.encode()


def generated_chunks(
    size: int, marker: str | None = None, *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    return generated_dossier(size, marker).chunks(chunk_bytes)


def generated_digest(size: int, marker: str | None = None) -> str:
    """The SHA-256 (hex) of the generated dossier, without a server."""
    return measure(generated_chunks(size, marker)).sha256


# --- realistic dossiers ------------------------------------------------------------------------


class DossierTemplate(StrEnum):
    STANDARD = "standaard"  # about 170 kB, three attachments
    ATTACHMENTS = "bijlagen"  # about 6 MB, thirty attachments


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    size: int  # bytes of the document inside the ZIP


_STANDARD_ATTACHMENTS = (
    Attachment("groepsplan-rekenen.pdf", 40_000),
    Attachment("verslag-intern-begeleider.pdf", 48_000),
    Attachment("rapport-groep-7.pdf", 32_000),
)
_EXTRA_ATTACHMENTS = tuple(Attachment(f"scan-rapport-{n:02d}.pdf", 160_000) for n in range(1, 28))

_ATTACHMENTS: dict[DossierTemplate, tuple[Attachment, ...]] = {
    DossierTemplate.STANDARD: _STANDARD_ATTACHMENTS,
    DossierTemplate.ATTACHMENTS: _STANDARD_ATTACHMENTS + _EXTRA_ATTACHMENTS,
}


def realistic_dossier(
    template: DossierTemplate, *, brin: str, overdrachtsoort: str = "overstapdossier"
) -> Iterator[bytes]:
    """A fictitious pupil's dossier; one attachment at a time is in memory, never the whole."""
    yield _realistic_head(brin, overdrachtsoort).encode()
    for attachment in _ATTACHMENTS[template]:
        yield from _attachment_element(attachment)
    yield b"</bijlagen>\n</leerling>\n</dossier>\n"


@functools.lru_cache(maxsize=32)
def measured_dossier(
    template: DossierTemplate, *, brin: str, overdrachtsoort: str = "overstapdossier"
) -> Measured:
    """Size and digest of :func:`realistic_dossier`, computed once per process and arguments."""
    return measure(realistic_dossier(template, brin=brin, overdrachtsoort=overdrachtsoort))


def _realistic_head(brin: str, overdrachtsoort: str) -> str:
    return "".join(
        [
            _XML_DECLARATION,
            f'<dossier xmlns="{DOSSIER_NAMESPACE}">\n',
            _METADATA,
            f"<overdrachtsoort>{escape(overdrachtsoort)}</overdrachtsoort>\n",
            _INZAGE,
            _HUIDIGE_SCHOOL.format(brin=escape(brin)),
            _LEERLING,
            _schoolloopbaan(),
            _ADVIES_ONDERSTEUNING_VERZUIM,
            _toetsresultaten(),
            "<bijlagen>\n",
        ]
    )


_METADATA = """<metadata>
  <pakket>OSO-gegevensset</pakket>
  <versie>2019</versie>
  <aanmaakdatum>2025-03-14T09:30:00+01:00</aanmaakdatum>
  <bronsysteem>OSO Traffic Center referentie-LAS</bronsysteem>
  <vrijgegevencategorieen>
    <categorie>leerling</categorie>
    <categorie>schoolloopbaan</categorie>
    <categorie>advies</categorie>
    <categorie>ondersteuning</categorie>
    <categorie>verzuim</categorie>
    <categorie>toetsresultaten</categorie>
    <categorie>bijlagen</categorie>
  </vrijgegevencategorieen>
</metadata>
"""

_INZAGE = """<inzage>
  <inzageouders>true</inzageouders>
  <datuminzage>2025-02-20</datuminzage>
  <toestemmingouders>true</toestemmingouders>
  <datumtoestemming>2025-02-20</datumtoestemming>
  <zienswijzeouders>Ouders herkennen zich in het beeld en het advies.</zienswijzeouders>
</inzage>
"""

_HUIDIGE_SCHOOL = """<huidigeschool>
  <brin>{brin}</brin>
  <vestiging>00</vestiging>
  <naam>Testschool De Referentie (fictief)</naam>
  <plaats>Voorbeeldstad</plaats>
  <contactpersoon>
    <naam>J. Jansen (fictief)</naam>
    <functie>intern begeleider</functie>
    <email>ib@testschool.invalid</email>
  </contactpersoon>
</huidigeschool>
"""

# A fictitious pupil. No BSN or onderwijsnummer: the reference dossier proves nothing needs one.
_LEERLING = """<leerling>
  <roepnaam>Fictief</roepnaam>
  <voorvoegsel>de</voorvoegsel>
  <achternaam>Testleerling</achternaam>
  <geboortedatum>2013-05-17</geboortedatum>
  <geslacht>X</geslacht>
  <thuistaal>Nederlands</thuistaal>
  <woonplaats>Voorbeeldstad</woonplaats>
"""

_ADVIES_ONDERSTEUNING_VERZUIM = """  <advies>
    <schooladvies>havo/vwo</schooladvies>
    <datumadvies>2025-01-31</datumadvies>
    <toelichting>Zelfstandig, nieuwsgierig en taalvaardig; rekenen vraagt aandacht bij
      meerstapsopgaven. Goede werkhouding, plant huiswerk zelf.</toelichting>
  </advies>
  <ondersteuning>
    <arrangement>basisondersteuning</arrangement>
    <aandachtspunt>Rekenen: extra instructie in een kleine groep, twee keer per week.</aandachtspunt>
    <aandachtspunt>Sociaal-emotioneel: geen bijzonderheden.</aandachtspunt>
  </ondersteuning>
  <verzuim>
    <schooljaar>2024-2025</schooljaar>
    <geoorloofd>6</geoorloofd>
    <ongeoorloofd>0</ongeoorloofd>
    <telaatkomen>2</telaatkomen>
  </verzuim>
"""

_SCHOOL_YEARS = tuple(f"{year}-{year + 1}" for year in range(2017, 2025))
_SUBJECTS = ("rekenen-wiskunde", "technisch lezen", "begrijpend lezen", "spelling")
_MOMENTS = ("midden", "eind")


def _schoolloopbaan() -> str:
    rows = [
        f"    <periode><schooljaar>{year}</schooljaar><groep>{group}</groep>"
        "<bevorderd>true</bevorderd></periode>\n"
        for group, year in enumerate(_SCHOOL_YEARS, start=1)
    ]
    return "  <schoolloopbaan>\n" + "".join(rows) + "  </schoolloopbaan>\n"


def _toetsresultaten() -> str:
    rows = []
    # Standardised tests start in group 3.
    for group, year in list(enumerate(_SCHOOL_YEARS, start=1))[2:]:
        for subject in _SUBJECTS:
            for moment in _MOMENTS:
                rows.append(_test_result(year, group, subject, moment))
    return "  <toetsresultaten>\n" + "".join(rows) + "  </toetsresultaten>\n"


def _test_result(year: str, group: int, subject: str, moment: str) -> str:
    # Scores derived from the key, so the dossier is the same on every run.
    seed = hashlib.sha256(f"{year}/{subject}/{moment}".encode()).digest()
    score = 20 + seed[0] % 60
    level = ("I", "II", "III", "IV", "V")[seed[1] % 5]
    return (
        "    <toets>\n"
        f"      <schooljaar>{year}</schooljaar><groep>{group}</groep>\n"
        f"      <leerlijn>{subject}</leerlijn><afnamemoment>{moment}</afnamemoment>\n"
        f"      <vaardigheidsscore>{score + group * 20}</vaardigheidsscore>"
        f"<niveau>{level}</niveau>\n"
        "      <toetsaanbieder>fictief toetsinstituut</toetsaanbieder>\n"
        "    </toets>\n"
    )


def _attachment_element(attachment: Attachment) -> Iterator[bytes]:
    archive = _zipped(attachment)
    yield (
        "  <bijlage>\n"
        f"    <naam>{escape(attachment.name)}.zip</naam>\n"
        "    <mimetype>application/zip</mimetype>\n"
        f"    <grootte>{len(archive)}</grootte>\n"
        '    <inhoud codering="base64">\n'
    ).encode()
    for start in range(0, len(archive), _BASE64_SLICE):
        yield base64.encodebytes(archive[start : start + _BASE64_SLICE])
    yield b"    </inhoud>\n  </bijlage>\n"


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
