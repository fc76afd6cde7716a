"""The OSO gegevensset's XSD and XSLT rules, read from ``../shared/oso-gegevensset``.

The standard's files are third-party and never copied into this repository (see that folder's
README): the CI clone has ``shared/`` beside the project root, as a developer's worktree does.
"""

from __future__ import annotations

import functools
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import xmlschema
from saxonche import PySaxonProcessor, PyXsltExecutable

GEGEVENSSET = Path(__file__).resolve().parents[2].parent / "shared" / "oso-gegevensset"
XSD = GEGEVENSSET / "OSO_gegevensset.xsd"
XSLT = GEGEVENSSET / "ValideerOSOgegevensset.xsl"
EXAMPLES = GEGEVENSSET / "examples"

MELDINGEN = "http://www.edustandaard.nl/oso_gegevensset/2019/schemas/Meldingen"

# The published stylesheet calls a named template "melding" that it does not define (upstream
# supplies it from elsewhere), so Saxon refuses to compile it alone (XTSE0650). This wrapper
# imports it unchanged, defines "melding" as one element per finding, and drops the text nodes
# its closing <xsl:apply-templates/> would otherwise copy out of the dossier.
_WRAPPER = """<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns="{meldingen}">
  <xsl:import href="{rules}"/>
  <xsl:template name="melding">
    <xsl:param name="tekst"/>
    <melding><xsl:value-of select="$tekst"/></melding>
  </xsl:template>
  <xsl:template match="text()"/>
</xsl:stylesheet>
"""


@functools.cache  # about 0.3 s to build; read-only once built
def load_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def xsd_errors(schema: xmlschema.XMLSchema, dossier: bytes) -> list[str]:
    return [str(error.reason) for error in schema.iter_errors(io.BytesIO(dossier))]


@dataclass
class ContentRules:
    """The XSLT content rules, compiled once; :meth:`findings` lists what they report."""

    processor: PySaxonProcessor
    executable: PyXsltExecutable

    def findings(self, dossier: bytes) -> list[str]:
        node = self.processor.parse_xml(xml_text=dossier.decode())
        report = ET.fromstring(self.executable.transform_to_string(xdm_node=node))
        return [element.text or "" for element in report.iter(f"{{{MELDINGEN}}}melding")]


def compile_content_rules(processor: PySaxonProcessor, workdir: Path) -> ContentRules:
    wrapper = workdir / "valideer-met-meldingen.xsl"
    wrapper.write_text(_WRAPPER.format(meldingen=MELDINGEN, rules=XSLT.as_uri()))
    compiler = processor.new_xslt30_processor()
    return ContentRules(processor, compiler.compile_stylesheet(stylesheet_file=str(wrapper)))
