"""The secret that signs the audit chain: which one, whether it is strong, whether it fits.

One chain, one key at a time. Every record names the key id it is signed with, and the chain's
head names the key that must sign the next record, so a node or a CLI holding another secret
writes nothing (AuditKeyMismatch) instead of splitting the chain. A secret is never made up
when the log already has records: that is how a chain used to break without anyone noticing.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from traffic_center.domain.audit import (
    MIN_SECRET_BYTES,
    KeyRing,
    chain_hash,
    check_strength,
    key_id,
)
from traffic_center.domain.errors import AuditKeyMismatch, NodeMisconfigured, SecretMissing
from traffic_center.pki.ca import write_private
from traffic_center.store.store import Store


def new_secret() -> bytes:
    return secrets.token_hex(MIN_SECRET_BYTES).encode()


async def chain_secret(configured: bytes | None, secret_file: Path, store: Store) -> bytes:
    """The secret to sign with, checked against the chain; made once, only for an empty log."""
    secret, origin = configured, "TC_SECRET_KEY"
    if secret is None:
        secret, origin = _read_secret_file(secret_file), str(secret_file)
    if secret is None:
        head = await store.audit.head()
        if head.count:
            raise SecretMissing(
                f"the audit log has {head.count} records signed with key {head.key_id or '?'}; "
                f"set TC_SECRET_KEY (or {secret_file}) to the nodes' secret"
            )
        secret = _make_secret_file(secret_file)
    secret = check_strength(secret, origin=origin)
    await ensure_signs_chain(store, secret)
    return secret


def _read_secret_file(path: Path) -> bytes | None:
    return _read_secret(path) if path.exists() else None


def _read_secret(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:  # not readable by this user, a directory, …
        raise _unusable_secret_file(path, error) from error


def _make_secret_file(path: Path) -> bytes:
    secret = new_secret()
    try:
        write_private(path, secret)
    except FileExistsError:  # another worker of this node made it first: use theirs
        return _read_secret(path)
    except OSError as error:
        raise _unusable_secret_file(path, error) from error
    return secret


def _unusable_secret_file(path: Path, error: OSError) -> NodeMisconfigured:
    return NodeMisconfigured(
        f"the secret file {path} cannot be used ({error.strerror}): fix it, or set TC_SECRET_KEY"
    )


async def ensure_signs_chain(store: Store, secret: bytes) -> None:
    """AuditKeyMismatch unless this secret is the one that signs the chain's next record."""
    head = await store.audit.head()
    mine = key_id(secret)
    if head.key_id is not None:
        if head.key_id != mine:
            raise AuditKeyMismatch(
                f"this TC_SECRET_KEY has key id {mine}, but the audit log is signed with key "
                f"{head.key_id}: use the nodes' secret (nothing was written)"
            )
        return
    # A log from before key ids: the newest record tells whether this secret made it.
    last = await store.audit.last()
    if last is not None and chain_hash(secret, last.prev_hash, last.record) != last.hash:
        raise AuditKeyMismatch(
            f"this TC_SECRET_KEY (key id {mine}) did not sign the audit log's newest record: "
            "use the nodes' secret (nothing was written)"
        )


def key_ring(current: bytes, previous: Sequence[bytes]) -> KeyRing:
    return KeyRing(current, [check_strength(p, origin="TC_PREVIOUS_SECRET_KEYS") for p in previous])
