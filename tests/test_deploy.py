"""The files in deploy/: monitoring (promtool, only metrics the service exports), the compose
file, the Kubernetes manifests (schema-checked offline) and the load-balancer configurations
(checked by haproxy and nginx themselves; nginx also forwards a real certificate)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import inspect
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry

import traffic_center.api.ops
from tests.support.processes import clean_env
from traffic_center.observability.metrics import Metrics, NodeGauges

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "traffic-center.json"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
HAPROXY = DEPLOY / "haproxy"
NGINX = DEPLOY / "nginx"
ENVOY = DEPLOY / "envoy" / "tls-terminating.yaml"
DRAIN_SECONDS = 30  # TC_DRAIN_SECONDS in compose.yaml and the Deployment

METRIC_NAME = re.compile(r"\b(traffic_center_[a-z_]+|process_[a-z_]+|up)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def tool(name: str, package: str) -> str:
    """A binary on PATH; a missing one fails the test rather than skipping it."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        pytest.fail(f"{name} not found: install it (scripts/setup --for-tests; Debian: {package})")
    return path


def promtool() -> str:
    """The promtool binary."""
    return tool("promtool", "prometheus")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with the given arguments, capturing its output."""
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def exported_metric_names() -> set[str]:
    """Every sample name a Traffic Center serves on /metrics, plus Prometheus's own `up`."""
    registry = CollectorRegistry()
    Metrics(registry)
    NodeGauges(registry, worker_pids=lambda: None)  # the ops listener's own
    names = {"up"}
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


def test_every_alert_passes_its_promtool_unit_test() -> None:
    """`promtool test rules alerts.test.yml`: each alert fires in a scenario with the texts
    expected, and a store outage does not fire TrafficCenterDown."""
    result = run_promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in alert_rules()} <= fired


def test_the_config_scrapes_the_ops_listener() -> None:
    """Job traffic-center, /metrics over plain HTTP, the rule file next to it."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = (job for job in config["scrape_configs"] if job["job_name"] == "traffic-center")
    assert job["metrics_path"] == "/metrics"
    assert job.get("scheme", "http") == "http"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert all(target.endswith(":9464") for target in targets)


def test_the_ops_app_serves_the_node_gauges() -> None:
    """The gauges counted as exported above are the ones the ops app builds."""
    source = inspect.getsource(traffic_center.api.ops)
    assert "NodeGauges(" in source, "traffic_center/api/ops.py no longer builds NodeGauges"


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


# --- compose.yaml --------------------------------------------------------------------------


def compose_config() -> dict[str, Any]:
    """`docker-compose config` of deploy/compose.yaml: validated against the Compose schema."""
    result = subprocess.run(
        [tool("docker-compose", "docker-compose"), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean_env(), "DOCKER_HOST": "unix:///nonexistent"},  # needs no Docker engine
    )
    assert result.returncode == 0, f"docker-compose config:\n{result.stdout}{result.stderr}"
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def seconds(duration: str) -> float:
    """A Compose duration such as `45s` or `1m30s` in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts, duration
    return sum(float(value) * units[unit] for value, unit in parts)


def test_compose_file_validates_and_has_every_service() -> None:
    """The Compose schema accepts it; PostgreSQL, two nodes, HAProxy, Prometheus, Grafana."""
    services = compose_config()["services"]
    assert {"postgres", "init", "tc-1", "tc-2", "haproxy", "prometheus", "grafana"} <= set(services)


def test_compose_nodes_drain_hold_no_ca_key_and_share_the_secret() -> None:
    """Grace period above the drain time; CA key volume only for init and cli; same secret."""
    config = compose_config()
    services = config["services"]
    for name in ("tc-1", "tc-2"):
        node = services[name]
        assert node["environment"]["TC_DRAIN_SECONDS"] == str(DRAIN_SECONDS)
        assert seconds(node["stop_grace_period"]) > DRAIN_SECONDS
        assert node["environment"]["TC_CLIENT_CA"] == "/certs/ca.pem"
        assert all(not volume.startswith("ca-admin:") for volume in node["volumes"]), name
        assert {secret["source"] for secret in node["secrets"]} == {
            "tc_secret_key",
            "postgres_password",
        }
    holders = {
        name
        for name, s in services.items()
        if any(v.startswith("ca-admin:") for v in s.get("volumes", []))
    }
    assert holders == {"init", "cli"}
    assert config["secrets"]["tc_secret_key"]["file"].endswith("deploy/secrets/tc_secret_key")


def test_compose_mounts_existing_files_with_the_rules_and_the_dashboard() -> None:
    """Every bind-mounted file exists (Compose does not check); the shared monitoring files."""
    services = compose_config()["services"]
    sources = set()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), f"{source} is mounted but does not exist"
                sources.add(Path(source).resolve())
    assert {ALERTS.resolve(), DASHBOARD.resolve(), (HAPROXY / "tcp.cfg").resolve()} <= sources
    assert "tc-1:9464" in (DEPLOY / "compose" / "prometheus.yml").read_text()


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """The compose Prometheus config with alerts.yml next to it, as mounted."""
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_scripts_are_valid_shell() -> None:
    """`sh -n` on the entry scripts (they run under /bin/sh in the image)."""
    for script in sorted((DEPLOY / "compose").glob("*.sh")):
        result = subprocess.run(
            ["sh", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


# --- Kubernetes ----------------------------------------------------------------------------


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every resource in the manifests kustomization.yaml lists."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            if document:
                documents.append((name, document))
    return documents


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one resource of that kind (and name)."""
    (found,) = (
        document
        for _, document in kubernetes_documents()
        if document["kind"] == kind and name in (None, document["metadata"]["name"])
    )
    return found


def test_kustomization_lists_every_manifest() -> None:
    """No manifest is left out of `kubectl apply -k`."""
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    present = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_kubernetes_manifests_pass_the_schema() -> None:
    """Strict schema check (kubernetes-validate: schemas ship in the package, no download)."""
    documents = kubernetes_documents()
    assert len(documents) >= 6
    for name, document in documents:
        try:
            kubernetes_validate.validate(
                document, kubernetes_validate.latest_version(), strict=True
            )
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {document['kind']}: {error.message} at {list(error.path)}")


def test_kubernetes_schema_check_catches_a_mistake() -> None:
    """The check is real: a misspelt field in the Deployment is refused."""
    deployment = resource("Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_deployment_probes_grace_and_files() -> None:
    """Readiness /readyz and liveness /healthz on the ops port; grace above drain + preStop;
    the secret from the Secret; ca.pem and the node certificates mounted, never ca.key."""
    pod = resource("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"vendor": 8443, "ops": 9464}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["TC_DRAIN_SECONDS"] == str(DRAIN_SECONDS)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS + int(pre_stop[1])
    assert container["envFrom"] == [{"secretRef": {"name": "traffic-center-env"}}]
    assert "TC_SECRET_KEY" in resource("Secret", "traffic-center-env")["stringData"]
    ca = resource("ConfigMap", "traffic-center-ca")["data"]
    certs = resource("Secret", "traffic-center-certs")["stringData"]
    assert set(ca) == {"ca.pem"}
    assert set(certs) == {"server.pem", "server.key", "relay.pem", "relay.key"}
    mounted = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounted["ca"]["configMap"]["name"] == "traffic-center-ca"
    assert mounted["certs"]["secret"]["secretName"] == "traffic-center-certs"


def test_kubernetes_deployment_refuses_the_placeholder_secret() -> None:
    """The start-up guard in the container command, run by sh: placeholder and short keys fail."""
    (container,) = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    guard = container["args"][0].replace("exec traffic-center serve", "echo started")
    placeholder = resource("Secret", "traffic-center-env")["stringData"]["TC_SECRET_KEY"]
    good = base64.b64encode(bytes(range(48))).decode()
    for key, starts in (
        (placeholder, False),
        ("short", False),
        ("REPLACE-ME" + good, False),
        (good, True),
    ):
        result = subprocess.run(
            ["sh", "-c", guard],
            capture_output=True,
            text=True,
            check=False,
            env={"TC_SECRET_KEY": key},
        )
        assert (result.returncode == 0 and result.stdout.strip() == "started") is starts, key


def test_kubernetes_pdb_and_services_select_the_pods() -> None:
    """PDB and both Services select the Deployment's pods; vendor TCP, ops headless."""
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert (
        resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    )
    vendor = resource("Service", "traffic-center")["spec"]
    ops = resource("Service", "traffic-center-ops")["spec"]
    for spec in (vendor, ops):
        assert spec["selector"].items() <= labels.items()
    assert vendor["type"] == "LoadBalancer"
    assert [(p["protocol"], p["targetPort"]) for p in vendor["ports"]] == [("TCP", "vendor")]
    assert ops["clusterIP"] == "None"
    assert [p["targetPort"] for p in ops["ports"]] == ["ops"]


def test_no_private_key_in_deploy() -> None:
    """Placeholders only: no PEM private key anywhere under deploy/ (nor a key file)."""
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert "PRIVATE KEY-----" not in path.read_text(errors="replace"), path
            assert path.suffix != ".key", path


# --- load balancers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Throwaway certificates made with the CLI: ca.pem, lb (server), the proxy certificate
    (`ca issue-proxy`), a school."""
    root = tmp_path_factory.mktemp("pki")
    home = root / "home"

    def cli(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "traffic_center", "--home", str(home), *args],
            capture_output=True, text=True, timeout=60, env=clean_env(), check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    cli("ca", "init")
    cli("ca", "issue-server", "--host", "lb.test", "--out", str(root / "lb"))
    cli("ca", "issue-server", "--host", "traffic-center-node", "--out", str(root / "node"))
    cli("ca", "issue-proxy", "--out", str(root / "proxy"))
    cli("school", "add", "--brin", "12AB", "--name", "Basisschool", "--sector", "PO")
    cli("endpoint", "add", "--routeringskenmerk", "00000007000012000001", "--brin", "12AB",
        "--url", "https://las.test/oso")  # fmt: skip
    cli("ca", "issue", "--routeringskenmerk", "00000007000012000001", "--brin", "12AB",
        "--name", "Basisschool", "--out", str(root / "school"))  # fmt: skip
    shutil.copy(home / "ca" / "ca.pem", root / "ca.pem")
    return root


def haproxy_check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`haproxy -c -f config`."""
    return subprocess.run(
        [tool("haproxy", "haproxy"), "-c", "-f", str(config)],
        capture_output=True, text=True, timeout=60, env={**clean_env(), **env}, check=False,
    )  # fmt: skip


def haproxy_bundles(pki: Path, directory: Path) -> Path:
    """ca.pem, lb.pem and proxy.pem in HAProxy's format (certificate and key in one file)."""
    directory.mkdir()
    shutil.copy(pki / "ca.pem", directory / "ca.pem")
    for name in ("lb", "proxy"):
        text = (pki / f"{name}.pem").read_text() + (pki / f"{name}.key").read_text()
        (directory / f"{name}.pem").write_text(text)
    return directory


@pytest.mark.parametrize("name", ["tcp.cfg", "tls-terminating.cfg"])
def test_haproxy_accepts_the_config(name: str, pki: Path, tmp_path: Path) -> None:
    """`haproxy -c` passes; the only warnings are the example node names not resolving here."""
    certs = haproxy_bundles(pki, tmp_path / "tc")
    result = haproxy_check(HAPROXY / name, {"TC_PROXY_CERTS": str(certs)})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Configuration file is valid" in output
    warnings = [line for line in output.splitlines() if "[WARNING]" in line]
    assert all("could not resolve address 'tc-" in line for line in warnings), warnings


def test_haproxy_tls_terminating_config_needs_its_certificates(tmp_path: Path) -> None:
    """The check is real: without lb.pem, proxy.pem and ca.pem haproxy refuses the config."""
    (tmp_path / "empty").mkdir()
    result = haproxy_check(
        HAPROXY / "tls-terminating.cfg", {"TC_PROXY_CERTS": str(tmp_path / "empty")}
    )
    assert result.returncode != 0


def test_haproxy_configs_check_readyz_and_retry_elsewhere() -> None:
    """Both modes: /readyz on the ops port, redispatch and retries; TLS mode forwards RFC 9440
    and connects with the proxy certificate, verifying the node."""
    for name in ("tcp.cfg", "tls-terminating.cfg"):
        lines = (HAPROXY / name).read_text().splitlines()
        text = "\n".join(line.split("#")[0] for line in lines)  # directives, no comments
        for line in ("option httpchk GET /readyz", "option redispatch", "retries 3"):
            assert line in text, f"{name}: {line}"
        assert re.search(r"default-server .*check .*port 9464 .*fall 3 rise 2", text), name
        # A node marked down (draining) keeps its established connections.
        assert "shutdown-sessions" not in text, name
    assert "mode tcp" in (HAPROXY / "tcp.cfg").read_text()
    tls = (HAPROXY / "tls-terminating.cfg").read_text()
    assert "http-request set-header Client-Cert :%[ssl_c_der,base64]:" in tls
    assert "http-request del-header Client-Cert" in tls
    assert re.search(r"bind .*ssl .*ca-file ca.pem verify required", tls)
    assert re.search(r"default-server ssl crt proxy.pem ca-file ca.pem verify required", tls)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def nginx_directory(pki: Path, directory: Path, upstream_port: int, port: int) -> Path:
    """deploy/nginx/ in a directory with the certificates, nodes and listener on loopback."""
    (directory / "tc").mkdir(parents=True)
    for name in ("ca.pem", "lb.pem", "lb.key", "proxy.pem", "proxy.key"):
        shutil.copy(pki / name, directory / "tc" / name)
    shutil.copy(NGINX / "client_cert.js", directory)
    (directory / "modules").symlink_to("/usr/lib/nginx/modules")
    (directory / "logs").mkdir()
    text = (NGINX / "tls-terminating.conf").read_text()
    text = re.sub(r"server tc-\d:8443", f"server 127.0.0.1:{upstream_port}", text)
    text = text.replace("listen 8443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    text = text.replace("pid /tmp/nginx-traffic-center.pid;", f"pid {directory}/nginx.pid;")
    (directory / "nginx.conf").write_text(text)
    return directory / "nginx.conf"


def test_nginx_accepts_the_config(pki: Path, tmp_path: Path) -> None:
    """`nginx -t`, node names replaced by loopback (nginx resolves them at start-up)."""
    config = nginx_directory(pki, tmp_path, free_port(), free_port())
    result = subprocess.run(
        [tool("nginx", "nginx"), "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


class EchoNode(http.server.BaseHTTPRequestHandler):
    """A stand-in node: mTLS, answers with the Client-Cert headers and its peer's subject."""

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()
        body = json.dumps(
            {
                "client_cert": self.headers.get_all("Client-Cert"),
                "client_cert_chain": self.headers.get_all("Client-Cert-Chain"),
                "peer": dict(pair for rdn in peer["subject"] for pair in rdn),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def echo_node(pki: Path) -> Iterator[int]:
    """The stand-in node on a loopback port, requiring a client certificate from the TC CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "node.pem", pki / "node.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoNode)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    """Until something listens on the loopback port (or the process died)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on {port}")


def test_nginx_forwards_the_verified_certificate_in_rfc9440_form(pki: Path, tmp_path: Path) -> None:
    """Through a real nginx with deploy/nginx/: the node gets `:base64(DER):` of the school's
    certificate (a forged Client-Cert is replaced), over TLS with the proxy certificate."""
    port = free_port()
    with echo_node(pki) as upstream_port:
        config = nginx_directory(pki, tmp_path, upstream_port, port)
        process = subprocess.Popen(
            [tool("nginx", "nginx"), "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for_port(port, process)
            context = ssl.create_default_context(cafile=pki / "ca.pem")
            context.check_hostname = False
            context.load_cert_chain(pki / "school.pem", pki / "school.key")
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            connection.request(
                "GET",
                "/v1/whoami",
                headers={"Client-Cert": ":Zm9yZ2Vk:", "Client-Cert-Chain": ":eA==:"},
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
            connection.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert response.status == 200, answer
    school = x509.load_pem_x509_certificate((pki / "school.pem").read_bytes())
    expected = ":" + base64.b64encode(school.public_bytes(Encoding.DER)).decode() + ":"
    assert answer["client_cert"] == [expected]
    assert answer["client_cert_chain"] is None
    assert answer["peer"]["commonName"] == "OSO Traffic Center proxy"  # `ca issue-proxy`


def test_envoy_config_forwards_rfc9440_and_checks_readyz() -> None:
    """No Envoy binary here: the structure. XFCC stripped, Client-Cert from the Lua filter,
    mTLS to the nodes with the proxy certificate, health checks on /readyz, port 9464."""
    text = ENVOY.read_text()
    config = yaml.safe_load(text)
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    downstream = chain["transport_socket"]["typed_config"]
    assert downstream["require_client_certificate"] is True
    assert downstream["common_tls_context"]["validation_context"]["trusted_ca"][
        "filename"
    ].endswith("/ca.pem")
    manager = chain["filters"][0]["typed_config"]
    assert manager["forward_client_cert_details"] == "SANITIZE"
    filters = [f["name"] for f in manager["http_filters"]]
    assert filters == ["envoy.filters.http.lua", "envoy.filters.http.router"]
    lua = manager["http_filters"][0]["typed_config"]["default_source_code"]["inline_string"]
    assert 'headers:remove("client-cert")' in lua
    assert 'headers:add("client-cert", ":" .. body .. ":")' in lua
    (cluster,) = config["static_resources"]["clusters"]
    (check,) = cluster["health_checks"]
    assert check["http_health_check"]["path"] == "/readyz"
    assert (check["unhealthy_threshold"], check["healthy_threshold"]) == (3, 2)
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert {e["endpoint"]["health_check_config"]["port_value"] for e in endpoints} == {9464}
    upstream = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    assert upstream["tls_certificates"][0]["certificate_chain"]["filename"].endswith("/proxy.pem")
    assert upstream["validation_context"]["trusted_ca"]["filename"].endswith("/ca.pem")


def test_the_multinode_guide_covers_the_operator_questions() -> None:
    """docs/operations-multinode.md: linked from the README, every file it lists exists,
    and it covers secret, CA key, health checks, pool sizing, draining and LB modes."""
    root = DEPLOY.parent
    guide = (root / "docs" / "operations-multinode.md").read_text()
    assert "docs/operations-multinode.md" in (root / "README.md").read_text()
    for path in re.findall(r"`(deploy/[^` ]+)`", guide):
        assert list(root.glob(path)), f"{path} is named in the guide but does not exist"
    for phrase in (
        "openssl rand -base64 48",
        "`ca.key` stays with the certificate admin",
        "nodes × workers × (pool_size + max_overflow) + CLI/admin headroom  ≤  max_connections",
        "`TC_DATABASE_POOL_SIZE`",
        "TC_DRAIN_SECONDS",
        "TCP passthrough",
        "traffic-center ca issue-proxy",
    ):
        assert phrase in guide, phrase
