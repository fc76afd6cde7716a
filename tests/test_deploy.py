"""The monitoring files in deploy/: valid for promtool, and only metrics the service exports."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

import traffic_center.api.ops
from traffic_center.observability.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "traffic-center.json"

METRIC_NAME = re.compile(r"\b(traffic_center_[a-z_]+|up)\b")
# Served by the ops app from its own registry, next to the worker metrics.
OPS_GAUGES = {"traffic_center_certificate_soonest_expiry_seconds", "traffic_center_ready"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def promtool() -> str:
    """The promtool binary; a missing one fails the test rather than skipping it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found on PATH: install it (Debian: apt-get install prometheus)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with the given arguments, capturing its output."""
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def exported_metric_names() -> set[str]:
    """Every sample name a Traffic Center serves on /metrics, plus Prometheus's own `up`."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = set(OPS_GAUGES) | {"up"}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of every group in alerts.yml."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard, parsed."""
    parsed: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return parsed


def dashboard_expressions() -> list[str]:
    """The PromQL of every panel target and of the query variables."""
    board = dashboard()
    expressions = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            expressions.append(query["query"] if isinstance(query, dict) else query)
    return expressions


def test_promtool_accepts_the_config_and_the_rules() -> None:
    """`promtool check config` (which loads alerts.yml too) and `check rules` pass."""
    for args in (("check", "config", str(PROMETHEUS_CONFIG)), ("check", "rules", str(ALERTS))):
        result = run_promtool(*args)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_the_config_scrapes_the_ops_listener() -> None:
    """Job traffic-center, /metrics over plain HTTP, the rule file next to it."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = (job for job in config["scrape_configs"] if job["job_name"] == "traffic-center")
    assert job["metrics_path"] == "/metrics"
    assert job.get("scheme", "http") == "http"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert all(target.endswith(":9464") for target in targets)


def test_the_ops_gauges_are_still_defined_in_the_ops_app() -> None:
    """The two gauges the registry cannot show are still created by the ops app."""
    source = inspect.getsource(traffic_center.api.ops)
    for name in OPS_GAUGES:
        assert f'"{name}"' in source, f"{name} is no longer defined in traffic_center/api/ops.py"


def test_every_metric_in_the_alerts_exists() -> None:
    """A renamed metric must not silently turn an alert into one that never fires."""
    exported = exported_metric_names()
    for rule in alert_rules():
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert used <= exported, f"{rule['alert']} uses unknown metrics {used - exported}"


def test_every_metric_in_the_dashboard_exists() -> None:
    """Every panel and variable query names only metrics the service exports."""
    exported = exported_metric_names()
    for expression in dashboard_expressions():
        used = set(METRIC_NAME.findall(expression))
        assert used, f"no metric found in {expression!r}"
        assert used <= exported, f"{expression!r} uses unknown metrics {used - exported}"


def test_the_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel expression (as a recording rule, $instance made concrete)."""
    board = dashboard()
    rules = [
        {"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": target["expr"]}
        for panel in board["panels"]
        for target in panel["targets"]
    ]
    for rule in rules:
        rule["expr"] = rule["expr"].replace("$instance", ".*")
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_complete() -> None:
    """Parses; schemaVersion ≥ 36; both variables; every panel has a title and a target."""
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "instance" in variables
    assert board["panels"]
    for panel in board["panels"]:
        assert panel.get("title"), f"panel {panel.get('id')} has no title"
        assert panel.get("targets"), f"panel {panel['title']!r} has no target"
        assert all(target.get("expr") for target in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    """Routing needs the severity; the operator needs to know what to do."""
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"].get("summary"), rule["alert"]
        assert rule["annotations"].get("description"), rule["alert"]
        assert rule.get("for"), f"{rule['alert']} has no `for:`"


def test_every_alert_is_explained_in_the_readme() -> None:
    """deploy/README.md says what to do for each alert."""
    readme = (DEPLOY / "README.md").read_text()
    for rule in alert_rules():
        assert f"**{rule['alert']}**" in readme, f"{rule['alert']} missing from deploy/README.md"
