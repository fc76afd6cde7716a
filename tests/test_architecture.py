"""Structure: the error table is complete and layers point inward."""

from __future__ import annotations

import ast
from pathlib import Path

from traffic_center.api.problems import STATUS_BY_ERROR
from traffic_center.domain.errors import all_error_classes

PACKAGE = Path(__file__).resolve().parent.parent / "traffic_center"

FORBIDDEN = {
    "domain": {
        "fastapi",
        "starlette",
        "sqlalchemy",
        "httpx",
        "uvicorn",
        "cryptography",
        "pydantic",
        "pydantic_settings",
        "traffic_center.settings",
        "traffic_center.api",
        "traffic_center.store",
        "traffic_center.pki",
    },
    "pki": {
        "fastapi",
        "starlette",
        "sqlalchemy",
        "httpx",
        "uvicorn",
        "traffic_center.api",
        "traffic_center.store",
    },
    "store": {"fastapi", "starlette", "httpx", "uvicorn", "traffic_center.api"},
    "broker": {"fastapi", "starlette", "uvicorn", "traffic_center.api"},
    # The relay knows LAS endpoints and the domain, nothing of our store or web framework.
    "relay": {
        "fastapi",
        "starlette",
        "sqlalchemy",
        "uvicorn",
        "traffic_center.api",
        "traffic_center.store",
        "traffic_center.broker",
        "traffic_center.settings",
    },
    "exchanges": {
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "traffic_center.api",
        "traffic_center.cli",
        "traffic_center.server",
    },
    # The audit trail records; it knows nothing of who serves or decides.
    "audit": {
        "fastapi",
        "starlette",
        "uvicorn",
        "httpx",
        "traffic_center.api",
        "traffic_center.broker",
        "traffic_center.exchanges",
        "traffic_center.cli",
    },
    "observability": {
        "fastapi",
        "sqlalchemy",
        "traffic_center.api",
        "traffic_center.store",
        "traffic_center.broker",
        "traffic_center.exchanges",
        "traffic_center.cli",
    },
    # The library behind the certificate admin's CLI, the demo and the tests: no web server.
    "admin": {
        "fastapi",
        "starlette",
        "uvicorn",
        "traffic_center.api",
        "traffic_center.broker",
        "traffic_center.exchanges",
        "traffic_center.cli",
        "traffic_center.server",
        "traffic_center.demo",
        "traffic_center.las",
    },
    "api": {"traffic_center.cli", "traffic_center.demo", "traffic_center.server"},
    "server": {"traffic_center.cli", "traffic_center.demo"},
    # The demo drives processes through the CLI's entry point, never the CLI's modules.
    "demo": {
        "traffic_center.cli",
        "traffic_center.api",
        "traffic_center.broker",
        "traffic_center.exchanges",
        "traffic_center.relay",
    },
    # The reference LAS talks to the Traffic Center only through its public HTTP API.
    "las": {
        "sqlalchemy",
        "traffic_center.api",
        "traffic_center.store",
        "traffic_center.broker",
        "traffic_center.exchanges",
        "traffic_center.relay",
        "traffic_center.admin",
    },
}


# The entry point may import every layer; the qualification kit drives a sandbox of every
# layer, as the CLI does, and judges a vendor's LAS from the outside.
TOP = {"cli", "qualify"}


def test_every_package_has_its_import_rules() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages - TOP - set(FORBIDDEN) == set(), "add the new package to FORBIDDEN"


def test_one_code_one_class_one_status() -> None:
    """A vendor matches on the code: it must mean one thing and come with one status."""
    by_code: dict[str, type] = {}
    for cls in all_error_classes():
        other = by_code.setdefault(cls.code, cls)
        assert other is cls, f"{cls.__name__} and {other.__name__} share the code {cls.code}"


def test_every_error_class_has_an_http_status_and_a_code() -> None:
    missing = [cls.__name__ for cls in all_error_classes() if cls not in STATUS_BY_ERROR]
    assert not missing, f"add these to api.problems.STATUS_BY_ERROR: {missing}"
    assert all(cls.code and cls.title for cls in all_error_classes())


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layers_point_inward() -> None:
    violations = []
    for layer, forbidden in FORBIDDEN.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            for name in _imports(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    violations.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not violations


def test_aiohttp_stays_behind_the_relay_s_httpx_transport() -> None:
    # The relay and the exchanges speak httpx; aiohttp is one module's implementation detail.
    importers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(name == "aiohttp" or name.startswith("aiohttp.") for name in _imports(path))
    }
    assert importers == {"relay/aiohttp_transport.py"}


def test_nothing_is_built_at_import_time() -> None:
    # Module-level calls that build state (engines, apps, settings) are not allowed.
    suspicious = ("create_app(", "Settings(", "create_async_engine(", "open_database(", "Store(")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.Expr):
                source = ast.unparse(node)
                if any(s in source for s in suspicious):
                    offenders.append(f"{path.relative_to(PACKAGE)}: {source[:60]}")
    assert not offenders
