"""The development bootstrap: a CA, the node's certificates and two schools, if missing."""

from __future__ import annotations

from pathlib import Path

import structlog

from traffic_center.admin.sandbox import DEV_SCHOOLS, SandboxBuilder, open_or_create_ca
from traffic_center.admin.store import open_signed_store, utc_now
from traffic_center.settings import Settings

log = structlog.get_logger("traffic_center.serve")


async def bootstrap_dev(settings: Settings) -> list[Path]:
    """Idempotent: creates only what is missing, so a restart keeps the same identities."""
    ca, made = open_or_create_ca(settings.ca_dir, name="OSO Traffic Center dev CA")
    if made:
        log.info("dev_ca_created", ca_dir=str(settings.ca_dir))
    written: list[Path] = []
    async with open_signed_store(settings) as (store, secret):
        builder = SandboxBuilder(ca, store, secret=secret, clock=utc_now)
        server = settings.server_cert_path.with_suffix("")
        if await builder.server_certificate(server, hosts=["127.0.0.1", "localhost", "::1"]):
            written.append(settings.server_cert_path)
        if await builder.relay_certificate(settings.upstream_cert_path.with_suffix("")):
            written.append(settings.upstream_cert_path)
        for school in DEV_SCHOOLS:
            prefix = settings.home / "dev" / school.key
            if await builder.client_certificate(school, prefix) is not None:
                written.append(prefix.with_suffix(".pem"))
            await builder.register(school, url=f"https://127.0.0.1/oso/{school.key}")
    return written


def curl_line(settings: Settings) -> str:
    home = settings.home
    return (
        f"curl --cacert {home}/ca/ca.pem --cert {home}/dev/school-a.pem "
        f"--key {home}/dev/school-a.key https://127.0.0.1:{settings.port}/v1/whoami"
    )
