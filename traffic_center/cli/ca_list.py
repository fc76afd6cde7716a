"""`traffic-center ca list`, fast: read straight from a SQLite store already at head.

An admin runs this all day. For a SQLite store already at the schema's head it reads the file
with the standard library (``store/quick.py``) and imports neither the settings, SQLAlchemy
nor cryptography; otherwise (PostgreSQL, no store yet, a schema to migrate) it takes the
ordinary path through ``cli/ca.py``. Either way the output is the same.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from traffic_center.cli.output import show_records
from traffic_center.domain.models import CertificateRecord, CertificateStatus
from traffic_center.store.quick import read_certificates, sqlite_file

# Where `Settings` puts the store (TC_DATABASE_URL, else TC_HOME/traffic-center.db);
# tests/test_cli_ca_list.py holds this to Settings.effective_database_url.
DATABASE_URL_ENV = "TC_DATABASE_URL"
HOME_ENV = "TC_HOME"
DEFAULT_HOME = ".traffic-center"
DATABASE_FILE = "traffic-center.db"

Listed = tuple[CertificateRecord, CertificateStatus]


def list_certificates(args: argparse.Namespace) -> int:
    listed = _quickly(args)
    if listed is None:
        listed = _from_store(args)
    show_records(
        [_row(record, status) for record, status in listed],
        as_json=args.json,
        columns=[
            ("SERIAL", "serial"),
            ("ROLE", "role"),
            ("ROUTERINGSKENMERK", "routeringskenmerk"),
            ("STATUS", "status"),
            ("NOT AFTER", "not_after"),
            ("SUBJECT", "subject"),
        ],
    )
    return 0


def database_url(args: argparse.Namespace) -> str:
    """The store's URL as the settings would give it, without loading them."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        return configured
    home = Path(getattr(args, "home", None) or os.environ.get(HOME_ENV) or DEFAULT_HOME)
    return f"sqlite:///{(home.expanduser() / DATABASE_FILE).resolve()}"


def _quickly(args: argparse.Namespace) -> Sequence[Listed] | None:
    database = sqlite_file(database_url(args))
    records = read_certificates(database) if database is not None else None
    if records is None:
        return None
    now = dt.datetime.now(dt.UTC)
    return [(record, record.status_at(now)) for record in records]


def _from_store(args: argparse.Namespace) -> Sequence[Listed]:
    import asyncio

    from traffic_center.cli.ca import list_from_store

    return [(item.record, item.status) for item in asyncio.run(list_from_store(args))]


def _row(record: CertificateRecord, status: CertificateStatus) -> dict[str, Any]:
    return {
        "serial": record.serial,
        "role": record.role.value,
        "routeringskenmerk": record.routeringskenmerk,
        "subject": record.subject,
        "not_before": record.not_before.isoformat(),
        "not_after": record.not_after.isoformat(),
        "status": status.value,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "revocation_reason": record.revocation_reason,
    }
