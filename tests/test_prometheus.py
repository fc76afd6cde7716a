"""A real Prometheus (the Debian package) scraping a running node with traffic: every query of
the Grafana dashboard returns data, and every alert rule evaluates cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.las import LasWorld, scenario_key
from tests.support.messages import open_session
from tests.support.processes import clean_env, free_port
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from tests.support.world import client_context, unique_brin, unique_routeringskenmerk
from traffic_center.pki.ca import write_issued

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "traffic-center.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
BOUND_SECONDS = 30
LABEL_VALUES = re.compile(r"^label_values\((.*), *\w+\)$")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[TrafficCenterUnderTest]:
    """One node on SQLite: the queries are about the node, not the backend."""
    running = await start_traffic_center(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'tc.db'}")
    yield running
    await running.stop()


@pytest.fixture
def prometheus(node: TrafficCenterUnderTest, tmp_path: Path) -> Iterator[str]:
    """Prometheus on 127.0.0.1, scraping the node's ops listener every second."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus (Debian package prometheus) is needed: scripts/setup --for-tests"
    directory = tmp_path / "prometheus"
    directory.mkdir()
    shutil.copy(ALERTS, directory / "alerts.yml")
    target = node.ops_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {"job_name": "traffic-center", "static_configs": [{"targets": [target]}]}
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "prometheus.log").open("w"),
        env=clean_env(),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def dashboard_queries() -> list[str]:
    """Every panel's PromQL, and the variable's (Grafana's label_values as its selector)."""
    board = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = LABEL_VALUES.match(query)
            queries.append(match[1] if match else query)
    return [query.replace("$instance", ".*") for query in queries]


async def traffic(node: TrafficCenterUnderTest, tmp_path: Path) -> None:
    """Exchanges of every kind, a relay broken off by the bron, a caller refused by the app
    and one refused in the TLS handshake."""
    las = LasWorld(node)
    try:
        bron, doel = await las.school("PO"), await las.school("VO")
        for scenario, complete in (
            (scenario_key("grootte", 200_000), True),
            (scenario_key("afbreken", 500_000), False),
        ):
            opened = await open_session(doel.party, bron.party, zoeksleutel=scenario)
            sessie_id = opened.json()["sessie_id"]
            body = {"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": scenario}
            client = doel.party.new_client()
            try:
                async with client.stream(
                    "POST", f"/v1/sessions/{sessie_id}/dossier", json=body
                ) as answer:
                    assert answer.status_code == 200
                    await answer.aread()
                received = True
            except httpx.TransportError:  # the bron broke off: so does the doel's stream
                received = False
            assert received is complete
        notified = await bron.party.client().post(
            "/v1/notifications",
            json={"sessie_id": sessie_id, "doel_routeringskenmerk": doel.routeringskenmerk},
        )
        assert notified.status_code == 200
        ghost = node.ca.issue_client_certificate(
            routeringskenmerk=unique_routeringskenmerk(), brin=unique_brin(), name="Ghost"
        )
        write_issued(ghost, tmp_path / "ghost")
        context = client_context(node.ca_pem, tmp_path / "ghost.pem", tmp_path / "ghost.key")
        async with httpx.AsyncClient(base_url=node.url, verify=context) as stranger:
            assert (await stranger.get("/v1/whoami")).status_code == 403
        async with httpx.AsyncClient(
            base_url=node.url, verify=client_context(node.ca_pem, None, None)
        ) as anonymous:
            with pytest.raises(httpx.TransportError):
                await anonymous.get("/v1/whoami")
    finally:
        await las.stop()


async def empty_queries(prometheus: httpx.AsyncClient, queries: list[str]) -> list[str]:
    empty = []
    for query in queries:
        answer = await prometheus.get("/api/v1/query", params={"query": query})
        answer.raise_for_status()
        if not answer.json()["data"]["result"]:
            empty.append(query)
    return empty


async def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    node: TrafficCenterUnderTest, prometheus: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    await traffic(node, tmp_path)
    queries = dashboard_queries()
    async with httpx.AsyncClient(base_url=prometheus, timeout=5) as api:
        empty = queries
        while empty:
            assert time.monotonic() - started < BOUND_SECONDS, f"no data for {empty}"
            await asyncio.sleep(1)
            try:
                empty = await empty_queries(api, queries)
            except httpx.TransportError:  # Prometheus still starting
                continue
        rules: list[dict[str, Any]] = [
            rule
            for group in (await api.get("/api/v1/rules")).json()["data"]["groups"]
            for rule in group["rules"]
        ]
    assert len(rules) == len(yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"])
    assert {rule["name"]: rule["health"] for rule in rules} == {
        rule["name"]: "ok" for rule in rules
    }
