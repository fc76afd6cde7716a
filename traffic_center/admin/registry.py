"""Register schools and endpoints, with the same input checks the API applies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from traffic_center.audit.admin import AdminAudit
from traffic_center.domain.audit import AuditType
from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.identifiers import (
    parse_brin,
    parse_endpoint_kind,
    parse_routeringskenmerk,
    parse_sector,
    parse_url,
    refuse_clear_pupil_numbers,
)
from traffic_center.domain.models import Endpoint, School
from traffic_center.store.store import Store


def new_school(*, brin: str, name: str, sector: str, board: str | None = None) -> School:
    """A validated, active school; raises before anything is stored."""
    refuse_clear_pupil_numbers([("name", name), ("board", board)])
    if not name.strip():
        raise InvalidInput("the school name must not be empty")
    return School(
        brin=parse_brin(brin),
        name=name.strip(),
        sector=parse_sector(sector),
        board=board,
        active=True,
    )


def new_endpoint(*, routeringskenmerk: str, brin: str, url: str, kind: str = "OV") -> Endpoint:
    """A validated, active endpoint; raises before anything is stored."""
    return Endpoint(
        routeringskenmerk=parse_routeringskenmerk(routeringskenmerk),
        brin=parse_brin(brin),
        url=parse_url(url),
        kind=parse_endpoint_kind(kind),
        active=True,
    )


# Results of registry changes in the audit log.
ADDED = "Toegevoegd"
DEACTIVATED = "Gedeactiveerd"
REACTIVATED = "Geheractiveerd"
URL_CHANGED = "UrlGewijzigd"


class RegistryAdmin:
    def __init__(self, store: Store, *, secret: bytes, clock: Callable[[], dt.datetime]) -> None:
        self.store = store
        self.clock = clock
        self.audit = AdminAudit(store, secret=secret, clock=clock)

    async def add_school(self, school: School) -> School:
        """Register a school built (and so validated) by :func:`new_school`."""
        await self.audit.ensure_writable()
        added = await self.store.registry.add_school(school, at=self.clock())
        await self.audit.record(AuditType.SCHOOL_CHANGED, added.brin, brin=added.brin, result=ADDED)
        return added

    async def add_endpoint(self, endpoint: Endpoint) -> Endpoint:
        """Register an endpoint built (and so validated) by :func:`new_endpoint`."""
        await self.audit.ensure_writable()
        added = await self.store.registry.add_endpoint(endpoint, at=self.clock())
        await self._endpoint_changed(added, ADDED)
        return added

    async def deactivate_school(self, brin: str) -> School:
        return await self._set_school_active(brin, active=False)

    async def reactivate_school(self, brin: str) -> School:
        return await self._set_school_active(brin, active=True)

    async def deactivate_endpoint(self, routeringskenmerk: str) -> Endpoint:
        return await self._set_endpoint_active(routeringskenmerk, active=False)

    async def reactivate_endpoint(self, routeringskenmerk: str) -> Endpoint:
        return await self._set_endpoint_active(routeringskenmerk, active=True)

    async def move_endpoint(self, routeringskenmerk: str, *, url: str) -> Endpoint:
        """A LAS moving host keeps its identity: sessions and notifications follow the
        routeringskenmerk, and the relay looks the URL up at every call."""
        new_url = parse_url(url)
        await self.audit.ensure_writable()
        endpoint = await self.store.registry.set_endpoint_url(
            parse_routeringskenmerk(routeringskenmerk), url=new_url, at=self.clock()
        )
        await self._endpoint_changed(endpoint, URL_CHANGED)
        return endpoint

    async def _set_school_active(self, brin: str, *, active: bool) -> School:
        parsed = parse_brin(brin)
        await self.audit.ensure_writable()
        school = await self.store.registry.set_school_active(parsed, active=active, at=self.clock())
        result = REACTIVATED if active else DEACTIVATED
        await self.audit.record(
            AuditType.SCHOOL_CHANGED, school.brin, brin=school.brin, result=result
        )
        return school

    async def _set_endpoint_active(self, routeringskenmerk: str, *, active: bool) -> Endpoint:
        parsed = parse_routeringskenmerk(routeringskenmerk)
        await self.audit.ensure_writable()
        endpoint = await self.store.registry.set_endpoint_active(
            parsed, active=active, at=self.clock()
        )
        await self._endpoint_changed(endpoint, REACTIVATED if active else DEACTIVATED)
        return endpoint

    async def _endpoint_changed(self, endpoint: Endpoint, result: str) -> None:
        await self.audit.record(
            AuditType.ENDPOINT_CHANGED,
            endpoint.routeringskenmerk,
            brin=endpoint.brin,
            routeringskenmerk=endpoint.routeringskenmerk,
            result=result,
        )

    async def schools(self) -> Sequence[School]:
        return await self.store.registry.list_schools()

    async def endpoints(self) -> Sequence[Endpoint]:
        return await self.store.registry.list_endpoints()
