"""`traffic-center audit verify` and `traffic-center audit export`."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from traffic_center.audit.admin import AdminAudit
from traffic_center.audit.keys import key_ring
from traffic_center.audit.verify import verify_chain
from traffic_center.cli.context import open_signed_store, open_store, say, settings_from, utc_now
from traffic_center.domain.audit import AuditType, ChainedRecord, check_strength, key_id
from traffic_center.domain.errors import InvalidInput

EXIT_BROKEN = 1


async def verify_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    async with open_signed_store(settings, existing=True) as (store, secret):
        keys = key_ring(secret, settings.previous_secrets())
        verdict = await verify_chain(
            store, keys, progress=lambda n: say(f"… {n:,} records checked")
        )
    if verdict.broken is None:
        print(f"OK {verdict.checked} records")
        return 0
    where = (
        f"record {verdict.broken.record_id} (transaction {verdict.broken.transaction_id})"
        if verdict.broken.record_id is not None
        else "the end of the chain"
    )
    print(f"BROKEN at {where}: {verdict.broken.reason}")
    return EXIT_BROKEN


async def rotate_key_command(args: argparse.Namespace) -> int:
    new_secret = check_strength(_read_key(args.new_key_file), origin=str(args.new_key_file))
    settings = settings_from(args)
    async with open_signed_store(settings) as (store, secret):
        if key_id(new_secret) == key_id(secret):
            raise InvalidInput("the new key is the current key")
        audit = AdminAudit(store, secret=secret, clock=utc_now)
        await audit.ensure_writable()
        await audit.record(AuditType.KEY_ROTATED, key_id(new_secret))
    say(f"the audit log is now signed by key {key_id(new_secret)} (was {key_id(secret)})")
    say("next: set TC_SECRET_KEY to the new secret on every node and for the CLI, and add the")
    say("old one to TC_PREVIOUS_SECRET_KEYS; nodes with the old secret now refuse to write")
    return 0


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


async def export_command(args: argparse.Namespace) -> int:
    since, until = _moment("--since", args.since), _moment("--until", args.until)
    settings = settings_from(args)
    async with open_store(settings, existing=True) as store:
        records = store.audit.walk(since=since, until=until)
        if args.out is None:
            written = await _export(records, sys.stdout)
        else:
            written = await _export_to_file(records, args.out)
    say(f"exported {written} records")
    return 0


async def _export(records: Any, out: TextIO) -> int:
    written = 0
    async for item in records:
        out.write(json.dumps(export_line(item), sort_keys=True) + "\n")
        written += 1
    return written


async def _export_to_file(records: Any, path: Path) -> int:
    """All or nothing: written beside the target, renamed into place only when complete."""
    if path.exists():  # noqa: ASYNC240 - a CLI: nothing else runs on this loop
        raise InvalidInput(f"--out {path} exists; refusing to overwrite an export")
    partial = path.with_name(path.name + ".partial")
    try:
        out = partial.open("x", encoding="utf-8")
    except OSError as exc:  # no such directory, not ours to write in: before any record is read
        raise InvalidInput(f"--out {path}: cannot write there ({exc.strerror})") from None
    try:
        with out:
            written = await _export(records, out)
        partial.rename(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def export_line(item: ChainedRecord) -> dict[str, Any]:
    """One record with its chain fields, as JSON-ready values."""
    values: dict[str, Any] = {"id": item.id, "prev_hash": item.prev_hash, "hash": item.hash}
    for field in dataclasses.fields(item.record):
        value = getattr(item.record, field.name)
        values[field.name] = value.isoformat() if isinstance(value, dt.datetime) else value
    return values


def _moment(flag: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{flag} {value!r} is not an ISO 8601 moment") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
