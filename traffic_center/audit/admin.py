"""Administrative actions on the record: certificates issued and revoked, registry changes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from traffic_center.domain.audit import DONE, AuditRecord, AuditType
from traffic_center.domain.errors import AuditUnavailable, StoreUnavailable
from traffic_center.store.store import Store


class AdminAudit:
    """Appends one chained record per action, after the action succeeded.

    Callers prove the log writable first (``ensure_writable``), so a change is refused rather
    than left without a trace; if the append still fails, StoreUnavailable reaches the admin
    (the CLI exits 1).
    """

    def __init__(self, store: Store, *, secret: bytes, clock: Callable[[], dt.datetime]) -> None:
        self._store = store
        self._secret = secret
        self._clock = clock

    async def ensure_writable(self) -> None:
        """Fail closed: no change without a record; prove the log writable before changing."""
        try:
            await self._store.audit.probe_write(self._clock(), secret=self._secret)
        except AuditUnavailable:
            raise
        except StoreUnavailable as exc:
            raise AuditUnavailable(exc.detail) from exc

    async def record(
        self,
        type: AuditType,
        subject: str,
        *,
        brin: str | None = None,
        routeringskenmerk: str | None = None,
        result: str = DONE,
    ) -> None:
        now = self._clock()
        record = AuditRecord(
            type=type,
            transaction_id=str(uuid.uuid4()),
            recorded_at=now,
            result=result,
            subject=subject,
            # Filed under the party it concerns, so that party sees it in GET /v1/audit.
            doel_brin=brin,
            doel_routeringskenmerk=routeringskenmerk,
            request_in=now,
            response_out=now,
        )
        await self._store.audit.append(record, secret=self._secret)
