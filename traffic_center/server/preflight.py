"""Every TLS file the node will load, loaded once before anything listens or any worker starts.

A file that does not load stops the start with one line (NodeMisconfigured, exit 2): loaded
first by the workers, it made each of them fail and be replaced for ever while the
supervisor's /readyz said ready and the vendor port took connections nobody answered.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from traffic_center.domain.errors import NodeMisconfigured
from traffic_center.pki.credentials import check_ca_bundle, check_key_pair
from traffic_center.relay.upstream import upstream_ssl_context
from traffic_center.server.tls import server_ssl_context
from traffic_center.settings import Settings


def check_tls_files(settings: Settings) -> None:
    """NodeMisconfigured naming the first TLS file, vendor listener or relay, that cannot be
    used; the files must exist (``serve`` says which is missing before this)."""
    _check_vendor_listener(settings)
    if _relay_configured(settings):
        _check_relay(settings)


def _check_vendor_listener(settings: Settings) -> None:
    check_ca_bundle(settings.client_ca_path, setting="TC_CLIENT_CA")
    check_key_pair(
        cert=settings.server_cert_path,
        key=settings.server_key_path,
        cert_setting="TC_TLS_CERT",
        key_setting="TC_TLS_KEY",
    )
    _loads(
        "the vendor listener's TLS",
        lambda: server_ssl_context(
            certfile=str(settings.server_cert_path),
            keyfile=str(settings.server_key_path),
            client_ca=str(settings.client_ca_path),
        ),
    )


def _relay_configured(settings: Settings) -> bool:
    """A relay certificate named by a setting must be there. At the default path it may be
    absent: the node serves the broker, warns, and answers relays with 503, as documented;
    named and missing, it is a typo, and the node would report ready while no relay works."""
    if settings.upstream_cert is not None:
        return True
    return settings.upstream_cert_path.is_file() and settings.upstream_key_path.is_file()


def _check_relay(settings: Settings) -> None:
    check_key_pair(
        cert=settings.upstream_cert_path,
        key=settings.upstream_key_path,
        cert_setting="TC_UPSTREAM_CERT",
        key_setting="TC_UPSTREAM_KEY",
    )
    trust_setting = "TC_UPSTREAM_CA" if settings.upstream_ca is not None else "TC_CLIENT_CA"
    check_ca_bundle(settings.upstream_trust_path, setting=trust_setting)
    _loads(
        "the relay's TLS",
        lambda: upstream_ssl_context(
            cert=settings.upstream_cert_path,
            key=settings.upstream_key_path,
            trust=settings.upstream_trust_path,
        ),
    )


def _loads(what: str, build: Callable[[], ssl.SSLContext]) -> None:
    # What the file checks above cannot see (a key type this OpenSSL refuses, say) still
    # stops the start here, with ssl's own reason, rather than in every worker.
    try:
        build()
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        raise NodeMisconfigured(f"{what} does not load: {error}") from error
