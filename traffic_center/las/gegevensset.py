"""The OSO gegevensset 2019.1 as the reference LAS writes it: profiles, categories, a pupil.

A dossier's shape follows from the transfer: the ``overstap`` (POPO, POVO, VOVO, POSWV, VOSWV)
and the overdrachtsoort pick a profile, the profile says per category whether it is
VERPLICHT, OPTIONEEL or VERBODEN, and the bron releases each OPTIONEEL category or opts out of
it (``OPT-UIT``). The ``inzage`` block states exactly what the bron's release header attests.

This module writes everything of a dossier except its attachments, as two strings around the
``overigdocumentlijst`` (category ``bijlagedocs``), so :mod:`traffic_center.las.dossier` can
stream the attachments between them. The pupil, the school and every name are fictitious; the
dossier carries no BSN or onderwijsnummer (the XSD leaves them out of every profile).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from xml.sax.saxutils import escape

from traffic_center.domain.identifiers import Overdrachtsoort, Sector
from traffic_center.domain.las_contract import DOSSIER_NAMESPACE
from traffic_center.domain.rules import ParentRelease, overstap

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
STANDAARDVERSIE = "2019.1"  # the XSLT refuses any other value in <standaardversie>
VALIDATIEVERSIE = "2019.1.1"
# A fixed creation date, so the same arguments always give the same bytes (and SHA-256).
_DOSSIER_DATE = "2025-03-14"
_INSPECTED_ON = "2025-02-20"


class Category(StrEnum):
    """The 16 categories of ``categorie_uitlevering``, in the XSD's order."""

    METADATA = "metadata"
    OUDERINZAGE = "ouderinzage"
    SCHOOL = "school"
    LEERLING = "leerling"
    OUDERSVERZORGERS = "oudersverzorgers"
    VVE = "vve"
    SCHOOLLOOPBAAN = "schoolloopbaan"
    OVERSTAPADVIES = "overstapadvies"
    ONDERWIJSONDERSTEUNING = "onderwijsondersteuning"
    VERZUIM = "verzuim"
    EINDTOETSBO = "eindtoetsbo"
    TOETSRESULTATEN = "toetsresultaten"
    HANDELINGSPLANNEN = "handelingsplannen"
    CIJFERLIJSTEN = "cijferlijsten"
    VOMBO = "vombo"
    BIJLAGEDOCS = "bijlagedocs"


class Uitlevering(StrEnum):
    """OSO codelijst 48: what a profile demands of a category, or what the bron did with it."""

    VERPLICHT = "VERPLICHT"
    OPTIONEEL = "OPTIONEEL"
    VERBODEN = "VERBODEN"
    OPT_UIT = "OPT-UIT"


_V, _O, _X = Uitlevering.VERPLICHT, Uitlevering.OPTIONEEL, Uitlevering.VERBODEN
_C = Category


def _rules(verplicht: set[Category], verboden: set[Category]) -> dict[Category, Uitlevering]:
    return {c: _V if c in verplicht else _X if c in verboden else _O for c in Category}


_ALWAYS = {_C.METADATA, _C.SCHOOL, _C.LEERLING}
_OVERSTAP = _ALWAYS | {_C.OUDERINZAGE, _C.OUDERSVERZORGERS, _C.SCHOOLLOOPBAAN, _C.OVERSTAPADVIES}
_SWV = _ALWAYS | {_C.OUDERSVERZORGERS, _C.SCHOOLLOOPBAAN, _C.ONDERWIJSONDERSTEUNING}

# The profiles of the OSO gegevensset 2019.1 (its example dossiers show the same table).
PROFILES: Mapping[str, Mapping[Category, Uitlevering]] = {
    "POPO": _rules(_OVERSTAP, {_C.VOMBO}),
    "POVO": _rules(_OVERSTAP, {_C.VVE, _C.VOMBO}),
    "VOVO": _rules(_OVERSTAP, {_C.VVE}),
    "POSWV": _rules(_SWV, {_C.EINDTOETSBO, _C.VOMBO}),
    "VOSWV": _rules(_SWV, {_C.VVE}),
}
# overdrachtbinnenbrin, and any pair outside codelijst 16's overstap kinds: only the school
# and the pupil are required, everything else may be released.
_OPEN_PROFILE = _rules(_ALWAYS, set())
_OVERIG = "OVERIG"  # codelijst 16's "other"

# What the reference LAS has data for: an OPTIONEEL category outside this set is opted out.
_WRITTEN = frozenset(
    {
        _C.METADATA,
        _C.OUDERINZAGE,
        _C.SCHOOL,
        _C.LEERLING,
        _C.OUDERSVERZORGERS,
        _C.SCHOOLLOOPBAAN,
        _C.OVERSTAPADVIES,
        _C.ONDERWIJSONDERSTEUNING,
        _C.VERZUIM,
        _C.TOETSRESULTATEN,
        _C.HANDELINGSPLANNEN,
        _C.BIJLAGEDOCS,
    }
)
# Released even in a lean dossier: who the pupil is, and the attachments that make it large.
_LEAN = _ALWAYS | {_C.BIJLAGEDOCS}


@dataclass(frozen=True, slots=True)
class DossierSpec:
    """Everything the dossier's bytes depend on (hashable: skeletons are cached per spec)."""

    brin: str
    bron_sector: Sector
    doel_sector: Sector
    overdrachtsoort: Overdrachtsoort
    release: ParentRelease | None  # what the bron attests in X-OSO-Vrijgave, if anything
    full: bool = True  # release every OPTIONEEL category there is data for; else opt out


def overstap_code(bron: Sector, doel: Sector) -> str:
    """OSO codelijst 16: POPO, POVO, VOVO, POSWV, VOSWV, else OVERIG."""
    if doel is Sector.SWV:
        own = overstap(bron, bron)  # the bron's own family: PO or VO
        return f"{own[0].value}SWV" if own else _OVERIG
    pair = overstap(bron, doel)
    if pair is None:
        return _OVERIG
    code = pair[0].value + pair[1].value
    return code if code in PROFILES else _OVERIG


def profile_for(code: str, overdrachtsoort: Overdrachtsoort) -> Mapping[Category, Uitlevering]:
    """The profile's demand per category, for an overstap code and a kind of transfer."""
    if overdrachtsoort is Overdrachtsoort.OVERDRACHT_BINNEN_BRIN:
        return _OPEN_PROFILE
    return PROFILES.get(code, _OPEN_PROFILE)


def released_categories(spec: DossierSpec) -> dict[Category, Uitlevering]:
    """What the dossier's ``categorie_uitlevering`` says: the profile, with the bron's choices."""
    code = overstap_code(spec.bron_sector, spec.doel_sector)
    rules = profile_for(code, spec.overdrachtsoort)
    return {category: _choice(category, rule, spec) for category, rule in rules.items()}


def _choice(category: Category, rule: Uitlevering, spec: DossierSpec) -> Uitlevering:
    if rule is not Uitlevering.OPTIONEEL:
        return rule
    if category is Category.OUDERINZAGE and spec.release is None:
        return Uitlevering.OPT_UIT  # nothing attested, nothing to state
    wanted = _WRITTEN if spec.full else _LEAN
    return Uitlevering.OPTIONEEL if category in wanted else Uitlevering.OPT_UIT


def is_released(value: Uitlevering) -> bool:
    return value in (Uitlevering.VERPLICHT, Uitlevering.OPTIONEEL)


@functools.lru_cache(maxsize=64)
def skeleton(spec: DossierSpec) -> tuple[str, str]:
    """The dossier up to inside ``<overigdocumentlijst>``, and from its end tag to the end.

    Every profile releases ``bijlagedocs`` (it is OPTIONEEL everywhere), so the attachments
    always have their place between the two.
    """
    released = released_categories(spec)
    if not is_released(released[Category.BIJLAGEDOCS]):
        raise ValueError("this profile forbids attachments")
    on = {category for category, value in released.items() if is_released(value)}
    head = "".join(
        [
            XML_DECLARATION,
            f'<dossier xmlns="{DOSSIER_NAMESPACE}">\n',
            _metadata(released, overstap_code(spec.bron_sector, spec.doel_sector)),
            f"  <overdrachtsoort>{spec.overdrachtsoort.value}</overdrachtsoort>\n",
            _inzage(spec) if Category.OUDERINZAGE in on else "",
            _school(spec),
            _LEERLING,
            _overstapadvies(spec) if Category.OVERSTAPADVIES in on else "",
            _schoolloopbaan(spec) if Category.SCHOOLLOOPBAAN in on else "",
            _onderwijsondersteuning(on),
            _VERZUIM if Category.VERZUIM in on else "",
            _toetslijst() if Category.TOETSRESULTATEN in on else "",
            "      <overigdocumentlijst>\n",
        ]
    )
    verzorgers = _VERZORGERS if Category.OUDERSVERZORGERS in on else ""
    tail = f"      </overigdocumentlijst>\n{verzorgers}    </leerling>\n  </huidigeschool>\n</dossier>\n"
    return head, tail


# --- the sections, in the XSD's order ------------------------------------------------------------


def _metadata(released: Mapping[Category, Uitlevering], code: str) -> str:
    categories = "".join(
        f"      <cat_{category.value}>{value.value}</cat_{category.value}>\n"
        for category, value in released.items()
    )
    return (
        "  <metadata>\n"
        "    <deeldossier>LASLVS</deeldossier>\n"
        "    <pakketnaam>OSO Traffic Center referentie-LAS</pakketnaam>\n"
        "    <pakketversie>1</pakketversie>\n"
        f"    <datum>{_DOSSIER_DATE}</datum>\n"
        f"    <standaardversie>{STANDAARDVERSIE}</standaardversie>\n"
        f"    <validatieversie>{VALIDATIEVERSIE}</validatieversie>\n"
        f"    <categorie_uitlevering>\n{categories}    </categorie_uitlevering>\n"
        f"    <overstap>{code}</overstap>\n"
        "  </metadata>\n"
    )


def _inzage(spec: DossierSpec) -> str:
    """What the parents did, exactly as the release header attests it (domain rule 8).

    No header: the parents have not inspected the dossier (scenario zondervrijgave). Consent
    (toestemming, VO→VO) includes inspection; codelijst 37 gives "Ja"/"Nee"/"Onbekend".
    """
    lines = ["  <inzage>\n", "    <voorlopigdossier>false</voorlopigdossier>\n"]
    if spec.release is None:
        lines.append("    <inzage>false</inzage>\n")
        if overstap_code(spec.bron_sector, spec.doel_sector) == "VOVO":
            lines.append("    <toestemming>Nee</toestemming>\n")
    else:
        lines += [
            "    <inzage>true</inzage>\n",
            f"    <inzagedatum>{_INSPECTED_ON}</inzagedatum>\n",
            "    <akkoord>Ja</akkoord>\n",
        ]
        if spec.release is ParentRelease.TOESTEMMING:
            lines.append("    <toestemming>Ja</toestemming>\n")
    return "".join(lines) + "  </inzage>\n"


def _school(spec: DossierSpec) -> str:
    return (
        "  <huidigeschool>\n"
        "    <naam>Testschool De Referentie (fictief)</naam>\n"
        "    <adreslijst>\n"
        + _address("      ", "Voorbeeldlaan", "1", "9999ZZ")
        + "    </adreslijst>\n"
        "    <communicatielijst>\n"
        + _email("      ", "ib@testschool.invalid", "werk")
        + "    </communicatielijst>\n"
        f"    <brincode>{escape(spec.brin)}</brincode>\n"
        "    <vestigingscode>00</vestigingscode>\n"
        "    <aanleverpunt>1</aanleverpunt>\n"
        f"    <soort>{spec.bron_sector.value}</soort>\n"
        "    <naamdirecteur>J. Jansen (fictief)</naamdirecteur>\n"
        "    <website>testschool.invalid</website>\n"
    )


def _address(indent: str, street: str, number: str, postcode: str) -> str:
    rows = [
        "<soortadres>bezoek</soortadres>",
        f"<straat>{street}</straat>",
        f"<nummer>{number}</nummer>",
        f"<postcode>{postcode}</postcode>",
        "<plaats>Voorbeeldstad</plaats>",
        '<land omschrijving="Nederland">6030</land>',
    ]
    inner = "".join(f"{indent}  {row}\n" for row in rows)
    return f"{indent}<adres>\n{inner}{indent}</adres>\n"


def _email(indent: str, address: str, aanduiding: str) -> str:
    return (
        f"{indent}<communicatie>\n"
        f"{indent}  <soort>e-mail</soort>\n"
        f"{indent}  <aanduiding>{aanduiding}</aanduiding>\n"
        f"{indent}  <nummer>{address}</nummer>\n"
        f"{indent}</communicatie>\n"
    )


# A fictitious pupil, and no BSN or onderwijsnummer: the reference dossier proves none is needed.
_LEERLING = (
    "    <leerling>\n"
    "      <voornaam>Fictief</voornaam>\n"
    "      <voorletters-1>F.</voorletters-1>\n"
    "      <voorvoegsel>de</voorvoegsel>\n"
    "      <achternaam>Testleerling</achternaam>\n"
    "      <roepnaam>Fictief</roepnaam>\n"
    "      <geboortedatum>2013-05-17</geboortedatum>\n"
    "      <geslacht>0</geslacht>\n"
    "      <adresgeheim>false</adresgeheim>\n"
    "      <adreslijst>\n"
    + _address("        ", "Verzonnenstraat", "7", "9999ZY")
    + "      </adreslijst>\n"
    "      <leerlingid>REF-00YY-0001</leerlingid>\n"
    "      <onderwijssinds>2017-08-28</onderwijssinds>\n"
    "      <datuminschrijving>2017-08-28</datuminschrijving>\n"
    "      <tehuis>false</tehuis>\n"
)


def _overstapadvies(spec: DossierSpec) -> str:
    advies = (  # codelijst 2 (DUO): 61 havo/vwo
        "        <advies>61</advies>\n        <profiel>basis</profiel>\n"
        if overstap_code(spec.bron_sector, spec.doel_sector) == "POVO"
        else ""
    )
    return (
        "      <overstapadvies>\n"
        f"{advies}"
        "        <argumentatie>Zelfstandig, nieuwsgierig en taalvaardig; rekenen vraagt aandacht"
        " bij meerstapsopgaven. Goede werkhouding, plant huiswerk zelf.</argumentatie>\n"
        "        <contactnodig>false</contactnodig>\n"
        "        <contactpersoon>J. Jansen (fictief)</contactpersoon>\n"
        "        <contactemail>ib@testschool.invalid</contactemail>\n"
        "        <aandachtspunten>Rekenen: extra instructie in een kleine groep helpt."
        "</aandachtspunten>\n"
        "      </overstapadvies>\n"
    )


# Eight school years; in VO the last four, as leerjaar 1-4 (codelijst 13: 11-14).
_SCHOOL_YEARS = tuple(range(2017, 2025))


def _schoolloopbaan(spec: DossierSpec) -> str:
    vo = overstap_code(spec.bron_sector, spec.doel_sector).startswith("VO")
    years = _SCHOOL_YEARS[-4:] if vo else _SCHOOL_YEARS
    rows = []
    for index, year in enumerate(years, start=1):
        group = str(10 + index) if vo else str(index)
        rows.append(
            "        <schoolloopbaan>\n"
            f"          <schooljaar>{year}-{year + 1}</schooljaar>\n"
            f"          <groepscode>{group}a</groepscode>\n"
            f"          <jaargroep>{group}</jaargroep>\n"
            f"          <begindatum>{year}-08-01</begindatum>\n"
            f"          <einddatum>{year + 1}-07-31</einddatum>\n"
            f"          <brincode>{escape(spec.brin)}</brincode>\n"
            "          <vestigingscode>00</vestigingscode>\n"
            "        </schoolloopbaan>\n"
        )
    return "      <schoolloopbaanlijst>\n" + "".join(rows) + "      </schoolloopbaanlijst>\n"


def _onderwijsondersteuning(on: set[Category]) -> str:
    parts = []
    if Category.ONDERWIJSONDERSTEUNING in on:
        parts.append("        <medicijngebruik>false</medicijngebruik>\n")
    if Category.HANDELINGSPLANNEN in on:
        parts.append(
            "        <handelingsplan>\n"
            "          <startdatum>2024-09-02</startdatum>\n"
            "          <einddatum>2025-01-31</einddatum>\n"
            "          <isgerichtop>rekenvaardigheid: meerstapsopgaven</isgerichtop>\n"
            "        </handelingsplan>\n"
        )
    if not parts:
        return ""
    return "      <onderwijsondersteuning>\n" + "".join(parts) + "      </onderwijsondersteuning>\n"


_VERZUIM = (
    "      <verzuim>\n"
    "        <dagdelengeoorloofd>6</dagdelengeoorloofd>\n"
    "        <dagdelenongeoorloofd>0</dagdelenongeoorloofd>\n"
    "        <meerdan25percent>false</meerdan25percent>\n"
    "      </verzuim>\n"
)

_SUBJECTS = (
    ("RW", "rekenen-wiskunde"),
    ("TL", "technisch lezen"),
    ("BL", "begrijpend lezen"),
    ("SP", "spelling"),
)
_MOMENTS = (("M", "01-31"), ("E", "06-15"))


def _toetslijst() -> str:
    rows = []
    # Standardised tests start in group 3.
    for group, year in list(enumerate(_SCHOOL_YEARS, start=1))[2:]:
        for code, subject in _SUBJECTS:
            for moment, day in _MOMENTS:
                rows.append(_toets(year + 1, group, code, subject, moment, day))
    return "      <toetslijst>\n" + "".join(rows) + "      </toetslijst>\n"


def _toets(year: int, group: int, code: str, subject: str, moment: str, day: str) -> str:
    # Scores derived from the key, so the dossier is the same on every run.
    seed = hashlib.sha256(f"{year}/{subject}/{moment}".encode()).digest()
    score = 20 + seed[0] % 60 + group * 20
    level = ("I", "II", "III", "IV", "V")[seed[1] % 5]
    return (
        "        <toets>\n"
        "          <toetsidentificatie>\n"
        f"            <eldtoetscode>REF-{code}-{moment}{group}</eldtoetscode>\n"
        f"            <leergebied>{subject}</leergebied>\n"
        f"            <toetsnaam>Fictieve toets {subject} {moment}{group}</toetsnaam>\n"
        "          </toetsidentificatie>\n"
        "          <afname>\n"
        f"            <afnamedatum>{year}-{day}</afnamedatum>\n"
        f"            <jaargroep>{group}</jaargroep>\n"
        "          </afname>\n"
        "          <resultaat>\n"
        f"            <toetsscore><vaardigheidsscore>{score}</vaardigheidsscore></toetsscore>\n"
        "            <referentiescore>\n"
        "              <codereferentiescore>Norm</codereferentiescore>\n"
        "              <codevergelijkingsgroep>Landelijk</codevergelijkingsgroep>\n"
        f"              <waarde>{level}</waarde>\n"
        "            </referentiescore>\n"
        "          </resultaat>\n"
        "        </toets>\n"
    )


def _verzorger(first: str, relation: str) -> str:
    return (
        "      <verzorger>\n"
        f"        <voornaam>{first}</voornaam>\n"
        "        <achternaam>Testouder</achternaam>\n"
        "        <communicatielijst>\n"
        + _email("          ", f"{first.lower()}@ouders.invalid", "prive")
        + "        </communicatielijst>\n"
        f"        <relatietotkind>{relation}</relatietotkind>\n"
        "        <wettigevertegenwoordiger>true</wettigevertegenwoordiger>\n"
        "      </verzorger>\n"
    )


# Codelijst 41: 1 and 2 are the parents.
_VERZORGERS = _verzorger("Eerste", "1") + _verzorger("Tweede", "2")
