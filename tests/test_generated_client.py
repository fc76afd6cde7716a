"""A client generated from openapi.yaml by openapi-python-client runs the whole doel flow
against a live Traffic Center and a reference LAS bron, as a vendor's would."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from xml.etree import ElementTree

import pytest

from tests.support.las import LasWorld, scenario_key
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import client_context

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "tc_generated_client"


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client package, generated once per test session (generation takes seconds)."""
    where = tmp_path_factory.mktemp("generated")
    tool = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [
            str(tool),
            "generate",
            "--path",
            str(ROOT / "openapi.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(where / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_client_runs_the_doel_flow(
    tc: TrafficCenterUnderTest, las: LasWorld, generated: ModuleType
) -> None:
    bron = await las.school("PO")
    doel = await las.school("VO")
    models = _module("models")
    open_session = _module("api.sessions.open_session")
    relay_dossier = _module("api.relay.relay_dossier")
    close_session = _module("api.sessions.close_session")
    tls = client_context(tc.ca_pem, doel.party.cert, doel.party.key)
    zoeksleutel = scenario_key("gereed")
    async with asyncio.timeout(60), generated.Client(base_url=tc.url, verify_ssl=tls) as client:
        # The oneOf body: one whole model per key, each with bron_brin and overdrachtsoort.
        granted = await open_session.asyncio(
            client=client,
            body=models.SessionCreateByZoeksleutel(
                bron_brin=bron.brin,
                overdrachtsoort=models.SessionCreateByZoeksleutelOverdrachtsoort.OVERSTAPDOSSIER,
                zoeksleutel=zoeksleutel,
            ),
        )
        assert isinstance(granted, models.SessionGranted), granted
        assert bron.routeringskenmerk in [e.routeringskenmerk for e in granted.bron_endpoints]

        # application/xml is no model: the detailed answer carries the bytes.
        dossier = await relay_dossier.asyncio_detailed(
            granted.sessie_id,
            client=client,
            body=models.DossierRequestBodyByZoeksleutel(
                routeringskenmerk=bron.routeringskenmerk, zoeksleutel=zoeksleutel
            ),
        )
        assert dossier.status_code == 200, dossier.content[:500]
        assert dossier.headers["content-type"].startswith("application/xml")
        assert ElementTree.fromstring(dossier.content).tag, dossier.content[:100]

        closed = await close_session.asyncio(
            granted.sessie_id,
            client=client,
            body=models.SessionCloseBody(
                resultaat=models.SessionCloseBodyResultaat.OVERDRACHTGESLAAGD,
                routeringskenmerk=bron.routeringskenmerk,
            ),
        )
        assert isinstance(closed, models.SessionClosed), closed
        assert closed.resultaat == models.SessionClosedResultaat.OVERDRACHTGESLAAGD

        # A second close is a Problem the client parses, its code an open string.
        again = await close_session.asyncio(
            granted.sessie_id,
            client=client,
            body=models.SessionCloseBody(
                resultaat=models.SessionCloseBodyResultaat.OVERDRACHTGESLAAGD,
                routeringskenmerk=bron.routeringskenmerk,
            ),
        )
        assert isinstance(again, models.Problem), again
        assert again.code == "SessieReedsAfgemeld"
