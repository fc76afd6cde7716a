"""The reference LAS's dossiers against the real OSO gegevensset: its XSD and its XSLT rules.

Every transfer the reference LAS can serve (POPO, POVO, VOVO, binnen-BRIN, POSWV, VOSWV, and
special education as PO/VO), with and without the parents' release, as the realistic dossier
and as a generated one; the multi-megabyte ones too. The standard's files are read from
``../shared/oso-gegevensset`` (never copied here).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import xmlschema
from saxonche import PySaxonProcessor

from tests.support.gegevensset import (
    EXAMPLES,
    ContentRules,
    compile_content_rules,
    load_schema,
    xsd_errors,
)
from traffic_center.domain.identifiers import Overdrachtsoort, Sector
from traffic_center.domain.las_contract import DOSSIER_NAMESPACE
from traffic_center.domain.rules import ParentRelease, required_release
from traffic_center.las.dossier import (
    GENERATED_SPEC,
    DossierTemplate,
    generated_chunks,
    realistic_dossier,
)
from traffic_center.las.gegevensset import (
    Category,
    DossierSpec,
    Uitlevering,
    overstap_code,
    profile_for,
    released_categories,
)

NS = f"{{{DOSSIER_NAMESPACE}}}"
MB = 1024 * 1024
_OV, _BB, _SWV = (
    Overdrachtsoort.OVERSTAPDOSSIER,
    Overdrachtsoort.OVERDRACHT_BINNEN_BRIN,
    Overdrachtsoort.SWV_DOSSIER,
)
# (bron, doel, overdrachtsoort): every transfer the broker grants a reference LAS.
TRANSFERS = [
    (Sector.PO, Sector.PO, _OV),
    (Sector.PO, Sector.VO, _OV),
    (Sector.VO, Sector.VO, _OV),
    (Sector.SBO, Sector.VSO, _OV),
    (Sector.PO, Sector.PO, _BB),
    (Sector.VO, Sector.VO, _BB),
    (Sector.PO, Sector.SWV, _SWV),
    (Sector.VO, Sector.SWV, _SWV),
]


def specs() -> Iterator[DossierSpec]:
    """Each transfer as the bron attests it (gereed) and without the release (zondervrijgave)."""
    for bron, doel, soort in TRANSFERS:
        for release in dict.fromkeys([required_release(bron, doel), None]):
            yield DossierSpec("00YY", bron, doel, soort, release)


SPECS = list(specs())


def spec_id(spec: DossierSpec) -> str:
    release = spec.release.value if spec.release else "zonder"
    return f"{spec.bron_sector}-{spec.doel_sector}-{spec.overdrachtsoort}-{release}"


def standard(spec: DossierSpec) -> bytes:
    return b"".join(realistic_dossier(DossierTemplate.STANDARD, spec))


def generated(spec: DossierSpec, size: int = 100_000, marker: str | None = "Canary7") -> bytes:
    return b"".join(generated_chunks(size, marker, spec=dataclasses.replace(spec, brin="00YY")))


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return load_schema()


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContentRules]:
    with PySaxonProcessor(license=False) as processor:
        yield compile_content_rules(processor, tmp_path_factory.mktemp("xslt"))


# --- the harness can fail -----------------------------------------------------------------------


def test_the_validators_pass_the_standard_s_own_examples(
    schema: xmlschema.XMLSchema, rules: ContentRules
) -> None:
    examples = sorted(EXAMPLES.glob("*.xml"))
    assert len(examples) == 12
    for example in examples:
        assert xsd_errors(schema, example.read_bytes()) == [], example.name
        assert rules.findings(example.read_bytes()) == [], example.name


def test_the_validators_catch_what_the_old_reference_dossier_did_wrong(
    schema: xmlschema.XMLSchema, rules: ContentRules
) -> None:
    invented = (
        f'<dossier xmlns="{DOSSIER_NAMESPACE}"><metadata><pakket>OSO</pakket>'
        "<versie>2019</versie></metadata></dossier>"
    ).encode()
    # Valid XML Schema-wise, but it opted out of the attachments it carries.
    opted_out = standard(SPECS[0]).replace(
        b"<cat_bijlagedocs>OPTIONEEL</cat_bijlagedocs>",
        b"<cat_bijlagedocs>OPT-UIT</cat_bijlagedocs>",
    )

    assert xsd_errors(schema, invented)
    assert xsd_errors(schema, opted_out) == []
    assert rules.findings(opted_out) == [
        'Een dossier mag geen gegevens uit de categorie "Bijlagedocumenten" bevatten wanneer'
        " deze categorie is uitgezet."
    ]


# --- every transfer, realistic and generated -------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_realistic_dossier_is_valid(
    schema: xmlschema.XMLSchema, rules: ContentRules, spec: DossierSpec
) -> None:
    dossier = standard(spec)
    assert xsd_errors(schema, dossier) == []
    assert rules.findings(dossier) == []


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_generated_dossier_is_valid(
    schema: xmlschema.XMLSchema, rules: ContentRules, spec: DossierSpec
) -> None:
    dossier = generated(spec)
    assert len(dossier) == 100_000
    assert dossier.count(b"Canary7") == 1
    assert xsd_errors(schema, dossier) == []
    assert rules.findings(dossier) == []


def test_the_multi_megabyte_dossiers_are_valid(schema: xmlschema.XMLSchema) -> None:
    vovo = DossierSpec("00YY", Sector.VO, Sector.VO, _OV, ParentRelease.TOESTEMMING)
    many = b"".join(realistic_dossier(DossierTemplate.ATTACHMENTS, vovo))
    large = generated(GENERATED_SPEC, 3 * MB + 3, marker=None)

    assert many.count(b"<document>") == 30
    assert 5 * MB < len(many) < 7 * MB
    assert xsd_errors(schema, many) == []
    assert len(large) == 3 * MB + 3
    assert xsd_errors(schema, large) == []


# --- what the dossier says agrees with the transfer and the release header -------------------


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_inzage_block_states_what_the_release_header_attests(spec: DossierSpec) -> None:
    root = ET.fromstring(standard(spec))
    inzage = root.find(f"{NS}inzage")
    released = root.findtext(f"{NS}metadata/{NS}categorie_uitlevering/{NS}cat_ouderinzage")

    if spec.release is None and released == Uitlevering.OPT_UIT:
        assert inzage is None  # nothing attested, nothing stated (SWV, binnen-BRIN)
        return
    assert inzage is not None
    inspected = inzage.findtext(f"{NS}inzage")
    consented = inzage.findtext(f"{NS}toestemming")
    assert inspected == ("false" if spec.release is None else "true")
    if spec.release is ParentRelease.TOESTEMMING:
        assert consented == "Ja"
    elif spec.release is None and spec.doel_sector is Sector.VO and spec.bron_sector is Sector.VO:
        assert consented == "Nee"
    else:
        assert consented is None


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_metadata_names_the_overstap_and_kind(spec: DossierSpec) -> None:
    root = ET.fromstring(standard(spec))
    expected = {
        (Sector.PO, Sector.PO): "POPO",
        (Sector.PO, Sector.VO): "POVO",
        (Sector.SBO, Sector.VSO): "POVO",
        (Sector.VO, Sector.VO): "VOVO",
        (Sector.PO, Sector.SWV): "POSWV",
        (Sector.VO, Sector.SWV): "VOSWV",
    }[(spec.bron_sector, spec.doel_sector)]

    assert root.findtext(f"{NS}metadata/{NS}overstap") == expected
    assert root.findtext(f"{NS}overdrachtsoort") == spec.overdrachtsoort.value
    assert root.findtext(f"{NS}huidigeschool/{NS}brincode") == "00YY"
    assert root.find(f".//{NS}bsn") is None
    assert root.find(f".//{NS}onderwijsnummer") is None


def test_the_profiles_are_the_standard_s() -> None:
    """Our profile table against the categories in the standard's full example dossiers."""
    for example in sorted(EXAMPLES.glob("*_full.xml")):
        root = ET.parse(example).getroot()
        code = root.findtext(f"{NS}metadata/{NS}overstap") or ""
        soort = Overdrachtsoort(root.findtext(f"{NS}overdrachtsoort"))
        cats = root.find(f"{NS}metadata/{NS}categorie_uitlevering")
        assert cats is not None
        theirs = {child.tag.removeprefix(f"{NS}cat_"): child.text for child in cats}
        ours = {category.value: rule.value for category, rule in profile_for(code, soort).items()}
        assert ours == theirs, example.name


def test_a_lean_dossier_opts_out_of_every_optional_category_but_the_attachments() -> None:
    lean = released_categories(dataclasses.replace(SPECS[0], full=False))
    optional = [c for c, v in lean.items() if v in (Uitlevering.OPTIONEEL, Uitlevering.OPT_UIT)]

    assert lean[Category.BIJLAGEDOCS] is Uitlevering.OPTIONEEL
    assert all(lean[c] is Uitlevering.OPT_UIT for c in optional if c is not Category.BIJLAGEDOCS)
    assert overstap_code(Sector.VO, Sector.PO) == "OVERIG"


def test_the_shared_folder_is_read_not_copied() -> None:
    repository = Path(__file__).resolve().parents[1]
    assert not list(repository.rglob("OSO_gegevensset.xsd"))
    assert not list(repository.rglob("Voorbeelddossier_*.xml"))
