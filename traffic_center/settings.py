"""Typed settings (env prefix ``TC_``), validated once at start-up; nothing is read at import."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from traffic_center.domain.audit import check_strength

SECRET_FILE = "secret.key"  # noqa: S105 - a file name, not a secret
DATABASE_FILE = "traffic-center.db"

# TC_* variables of the project's other tools (the benches, the tests, the HAProxy config in
# deploy/), not a node's settings: never taken for a misspelt one.
OTHER_TOOLS_PREFIXES = ("TC_BENCH_", "TC_TEST_")
OTHER_TOOLS_VARIABLES = frozenset({"TC_PROXY_CERTS"})
# How alike a name must be to a setting's to be offered as what was meant (difflib's ratio).
CLOSE_ENOUGH = 0.8


def _uvloop_installed() -> bool:
    return find_spec("uvloop") is not None


def _default_event_loop() -> Literal["asyncio", "uvloop"]:
    """uvloop where it is installed: a dependency of the package, except on Windows, where
    uvloop does not run and the node starts on asyncio's loop instead of failing."""
    return "uvloop" if _uvloop_installed() else "asyncio"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TC_", extra="forbid", validate_default=True)

    home: Path = Field(default=Path(".traffic-center"), description="root of all local state")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite file in TC_HOME"
    )
    dev: bool = Field(default=False, description="development mode: relaxed safety checks")

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=9464, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # uvloop moves a dossier with less CPU per MB (issue 14); out of file descriptors it resets
    # new connections where asyncio's loop lets them wait in the backlog: server/uvloop_loop.py.
    event_loop: Literal["asyncio", "uvloop"] = Field(
        default_factory=_default_event_loop,
        description=(
            "the listeners' event loop: uvloop (the default where it is installed) is faster, "
            "asyncio lets new connections wait (rather than be reset) while the node is out of "
            "file descriptors"
        ),
    )
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = Field(
        default=None,
        description="CA bundle that client certificates must chain to; default the TC CA",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "server secret for HMACs and the audit chain: 32+ random bytes as 64+ hex digits or "
            "43+ base64 characters; default TC_HOME/secret.key, created only for an empty log"
        ),
    )
    previous_secret_keys: str | None = Field(
        default=None,
        description="secrets rotated out, comma-separated: `audit verify` checks old records",
    )

    upstream_cert: Path | None = Field(
        default=None, description="the TC's relay client certificate; default TC_HOME/relay.pem"
    )
    upstream_key: Path | None = Field(default=None, description="its key; TC_HOME/relay.key")
    upstream_ca: Path | None = Field(
        default=None, description="trust bundle for LAS server certificates; default the TC CA"
    )
    relay_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    relay_read_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="longest silence from a LAS, not a total"
    )
    relay_max_dossier_bytes: int = Field(default=1024**3, ge=0)
    relay_max_in_flight: int = Field(default=64, ge=1, le=10_000)
    # Rule 8: refuse an overstapdossier the bron does not attest inzage/toestemming for.
    require_parent_release: bool = True

    session_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    # The design promises a revocation reaches every node within seconds; cap the cache so
    # no setting can break that promise (docs/rules.md, rule 1: revoked within 5 s).
    revocation_cache_seconds: float = Field(default=2.0, ge=0, le=4)
    rate_limit_sessions_per_minute: int = Field(default=120, ge=1)
    rate_limit_endpoints_per_minute: int = Field(default=30, ge=1)
    run_migrations: bool = Field(default=True, description="apply migrations on start-up")

    drain_seconds: int = Field(
        default=30, ge=0, le=3600, description="on SIGTERM, how long relays in flight may take"
    )
    node_heartbeat_seconds: float = Field(
        default=5.0, gt=0, le=300, description="how often a node says it is alive (a store write)"
    )
    crl_url: str | None = Field(
        default=None,
        description="the CRL's URL written into issued certificates, e.g. https://tc/v1/crl",
    )
    orphan_grace_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="a node silent this long has died: others close its open exchanges",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # --- Connection limits of the vendor listener (issue 10; docs/security.md) --------------------
    # Each bounds what one caller, with a certificate or without, can hold of a process.
    tls_handshake_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="a TLS handshake not done by then is cut off"
    )
    keep_alive_timeout_seconds: float = Field(
        default=5.0, gt=0, le=300, description="a connection with no request in progress is closed"
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="a request's headers must be complete by then"
    )
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="a request's body must be complete by then"
    )
    max_connections: int = Field(
        default=1000, ge=1, le=100_000, description="open vendor connections per process"
    )
    max_connections_per_certificate: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="open vendor connections one client certificate may hold, per process",
    )

    # --- Fair relay slots and request bodies (docs/security.md) ----------------------------------
    # One school, with one valid certificate, must never make another wait; a refused or
    # oversized request costs nothing lasting.
    relay_max_per_doel_school: int = Field(
        default=16, ge=1, le=10_000, description="relay slots one doel school may hold at once"
    )
    relay_max_per_bron_endpoint: int = Field(
        default=16, ge=1, le=10_000, description="relay slots one bron endpoint may hold at once"
    )
    relay_total_seconds: float = Field(
        default=900.0, gt=0, le=86_400, description="a whole relay, first byte to last, at most"
    )
    relay_doel_write_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="longest wait for a doel to read the next chunk"
    )
    max_request_body_bytes: int = Field(
        default=16 * 1024, ge=1024, le=1024**2, description="largest request body on the API"
    )

    # --- Rate limits, refusal records and retention (docs/security.md) ---------------------------
    # Rule 9: every route is limited per endpoint (sliding window, shared by all nodes); the
    # sessions and endpoints limits are TC_RATE_LIMIT_SESSIONS/ENDPOINTS_PER_MINUTE above.
    rate_limit_checks_per_minute: int = Field(default=600, ge=1)
    rate_limit_dossiers_per_minute: int = Field(default=600, ge=1)
    rate_limit_closes_per_minute: int = Field(default=600, ge=1)
    rate_limit_notifications_per_minute: int = Field(default=600, ge=1)
    rate_limit_audit_reads_per_minute: int = Field(default=60, ge=1)
    rate_limit_whoami_per_minute: int = Field(default=60, ge=1)
    # A minute, unless shortened: the qualification sandbox shortens it (with the budgets pro
    # rata) so a doel meets a 429 whose Retry-After is seconds (broker/rate_limits.py).
    rate_limit_window_seconds: int = Field(default=60, ge=1, le=60)
    refusal_audit_window_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="repeated refusals of one certificate: one audit record per window, counted",
    )
    session_retention_days: float = Field(
        default=30.0,
        ge=0,
        le=3650,
        description="closed and expired sessions are purged this long after they ended",
    )

    # --- PostgreSQL connection pool, per process (docs/operations-multinode.md) -------------------
    # PostgreSQL's max_connections is shared by every node: plan it by
    # nodes × workers × (pool size + overflow) + CLI headroom. SQLite ignores both.
    database_pool_size: int = Field(
        default=5, ge=1, le=1000, description="PostgreSQL connections a process keeps open"
    )
    database_max_overflow: int = Field(
        default=5, ge=0, le=1000, description="extra connections a process opens under load"
    )

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both TC_TLS_CERT and TC_TLS_KEY, or neither")
        if (self.upstream_cert is None) != (self.upstream_key is None):
            raise ValueError("set both TC_UPSTREAM_CERT and TC_UPSTREAM_KEY, or neither")
        if self.workers > 1 and ":memory:" in (self.database_url or ""):
            raise ValueError("an in-memory database cannot be shared by several workers")
        if self.orphan_grace_seconds < 3 * self.node_heartbeat_seconds:
            raise ValueError(
                "TC_ORPHAN_GRACE_SECONDS must be at least three heartbeats "
                "(TC_NODE_HEARTBEAT_SECONDS): a node is not dead after one late beat"
            )
        return self

    @field_validator("event_loop")
    @classmethod
    def _loop_installed(cls, value: str) -> str:
        # Asked for by name (the default is never uvloop without it): a clear line at start-up,
        # not an ImportError from deep in the server.
        if value == "uvloop" and not _uvloop_installed():
            raise ValueError(
                "uvloop is not installed here (it does not run on Windows): install it, "
                "or set TC_EVENT_LOOP=asyncio"
            )
        return value

    @field_validator("crl_url")
    @classmethod
    def _crl_url_is_http(cls, value: str | None) -> str | None:
        # Written into every certificate issued as its CRL distribution point, for as long as
        # the certificate lives: a typo there cannot be taken back. Relying parties fetch it
        # over HTTP (RFC 5280 §4.2.1.13; GET /v1/crl); an ldap:// or bare word they cannot.
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            raise ValueError(
                f"must be an http(s) URL such as http://crl.tc.example/oso.crl, not {value!r}"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_strength(value.get_secret_value().encode(), origin="TC_SECRET_KEY")
        return value

    # --- derived paths ---------------------------------------------------------------------------

    @property
    def ca_dir(self) -> Path:
        return self.home / "ca"

    @property
    def server_cert_path(self) -> Path:
        return self.tls_cert or self.home / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self.tls_key or self.home / "server.key"

    @property
    def client_ca_path(self) -> Path:
        return self.client_ca or self.ca_dir / "ca.pem"

    @property
    def upstream_cert_path(self) -> Path:
        return self.upstream_cert or self.home / "relay.pem"

    @property
    def upstream_key_path(self) -> Path:
        return self.upstream_key or self.home / "relay.key"

    @property
    def upstream_trust_path(self) -> Path:
        return self.upstream_ca or self.client_ca_path

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / DATABASE_FILE).resolve()}"

    @property
    def secret_file(self) -> Path:
        return self.home / SECRET_FILE

    def configured_secret(self) -> bytes | None:
        """TC_SECRET_KEY as given; the file and the chain are consulted by ``audit.keys``."""
        if self.secret_key is None:
            return None
        return self.secret_key.get_secret_value().strip().encode()

    def previous_secrets(self) -> list[bytes]:
        if not self.previous_secret_keys:
            return []
        return [p.strip().encode() for p in self.previous_secret_keys.split(",") if p.strip()]


def unknown_settings(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The TC_* variables in ``environ`` that no setting reads, each with the setting it most
    likely meant (None if none is close). Settings ignore them, so a typo would leave its
    setting at the default without a word."""
    known = [f"TC_{name.upper()}" for name in Settings.model_fields]
    return {
        name: next(iter(difflib.get_close_matches(name, known, n=1, cutoff=CLOSE_ENOUGH)), None)
        for name in sorted(environ)
        if name.startswith("TC_") and name not in known and not _other_tools(name)
    }


def _other_tools(name: str) -> bool:
    return name.startswith(OTHER_TOOLS_PREFIXES) or name in OTHER_TOOLS_VARIABLES


def describe_validation_error(error: ValidationError) -> str:
    """One readable line naming the offending settings."""
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"]) or "settings"
        parts.append(f"TC_{location.upper()}: {item['msg']}" if item["loc"] else item["msg"])
    return "invalid settings: " + "; ".join(parts)
