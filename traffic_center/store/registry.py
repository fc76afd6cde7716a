"""The registry of schools and their endpoints (aanleverpunten)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from traffic_center.domain.errors import (
    EndpointExists,
    EndpointNotFound,
    SchoolExists,
    SchoolNotFound,
)
from traffic_center.domain.identifiers import EndpointKind, Sector
from traffic_center.domain.models import Endpoint, School
from traffic_center.store.database import Database
from traffic_center.store.schema import endpoints, schools

# The endpoints' columns beside their school's, which has columns of the same names.
_ENDPOINT_PREFIX = "endpoint_"
_ENDPOINT_LABELS = tuple((c.name, _ENDPOINT_PREFIX + c.name) for c in endpoints.c)


# The columns an Endpoint is made of (``_endpoint``).
_ENDPOINT_FIELDS = ("routeringskenmerk", "brin", "url", "kind", "active")


class RegistryRepository:
    def __init__(self, database: Database) -> None:
        self._db = database
        # The reads of every request (the caller's identity, the bron endpoint), built once
        # with bindparam()s: an execution only fills in the values, and SQLAlchemy's
        # compiled cache hits. Never a cache of the rows: a deactivation counts at once.
        by_kenmerk = endpoints.c.routeringskenmerk == bindparam("match_routeringskenmerk")
        self._school = select(schools).where(schools.c.brin == bindparam("match_brin"))
        self._endpoint = select(endpoints).where(by_kenmerk)
        self._endpoint_with_school = endpoint_with_school_query()
        self._endpoint_lists: dict[_EndpointFilters, Select[Any]] = {}
        # A session's grant: the bron school and all its endpoints, in one read (issue 14).
        self._school_with_endpoints = (
            select(schools, *[c.label(_ENDPOINT_PREFIX + c.name) for c in endpoints.c])
            .select_from(schools.outerjoin(endpoints, endpoints.c.brin == schools.c.brin))
            .where(schools.c.brin == bindparam("match_brin"))
            .order_by(endpoints.c.routeringskenmerk)
        )

    # --- schools ------------------------------------------------------------------------------

    async def add_school(self, school: School, *, at: dt.datetime) -> School:
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    schools.insert().values(
                        brin=school.brin,
                        name=school.name,
                        sector=school.sector.value,
                        board=school.board,
                        active=school.active,
                        created_at=at,
                        updated_at=at,
                    )
                )
        except IntegrityError:
            raise SchoolExists(f"school {school.brin} is already registered") from None
        return school

    async def get_school(self, brin: str) -> School | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (await conn.execute(self._school, {"match_brin": brin})).first()
        return _school(row._mapping) if row else None

    async def school_with_endpoints(self, brin: str) -> tuple[School | None, list[Endpoint]]:
        """The school and all its endpoints (active or not), in one read; (None, []) when
        there is no such school. Read now, never cached: a deactivation counts at once."""
        async with self._db.transaction(read_only=True) as conn:
            rows = list(await conn.execute(self._school_with_endpoints, {"match_brin": brin}))
        if not rows:
            return None, []
        found = []
        for row in rows:
            values = row._mapping  # built anew at every access
            if values[_ENDPOINT_PREFIX + "routeringskenmerk"] is not None:  # else none at all
                found.append(_endpoint({name: values[label] for name, label in _ENDPOINT_LABELS}))
        return _school(rows[0]._mapping), found

    async def list_schools(self) -> Sequence[School]:
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(select(schools).order_by(schools.c.brin))
            return [_school(row._mapping) for row in rows]

    async def set_school_active(self, brin: str, *, active: bool, at: dt.datetime) -> School:
        async with self._db.transaction() as conn:
            result = await conn.execute(
                update(schools).where(schools.c.brin == brin).values(active=active, updated_at=at)
            )
            if result.rowcount == 0:
                raise SchoolNotFound(f"no school with BRIN {brin}")
            row = (await conn.execute(select(schools).where(schools.c.brin == brin))).one()
        return _school(row._mapping)

    # --- endpoints ----------------------------------------------------------------------------

    async def add_endpoint(self, endpoint: Endpoint, *, at: dt.datetime) -> Endpoint:
        try:
            async with self._db.transaction() as conn:
                known = (
                    await conn.execute(
                        select(schools.c.brin).where(schools.c.brin == endpoint.brin)
                    )
                ).first()
                if known is None:
                    raise SchoolNotFound(f"no school with BRIN {endpoint.brin}; add it first")
                await conn.execute(
                    endpoints.insert().values(
                        routeringskenmerk=endpoint.routeringskenmerk,
                        brin=endpoint.brin,
                        url=endpoint.url,
                        kind=endpoint.kind.value,
                        active=endpoint.active,
                        created_at=at,
                        updated_at=at,
                    )
                )
        except IntegrityError:
            raise EndpointExists(
                f"endpoint {endpoint.routeringskenmerk} is already registered; to move it use "
                "`endpoint set-url`, to bring it back `endpoint reactivate`"
            ) from None
        return endpoint

    async def get_endpoint(self, routeringskenmerk: str) -> Endpoint | None:
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(self._endpoint, {"match_routeringskenmerk": routeringskenmerk})
            ).first()
        return _endpoint(row._mapping) if row else None

    async def endpoint_with_school(self, routeringskenmerk: str) -> tuple[Endpoint, School] | None:
        """One read for the per-request identity check: the endpoint and its school."""
        async with self._db.transaction(read_only=True) as conn:
            row = (
                await conn.execute(
                    self._endpoint_with_school, {"match_routeringskenmerk": routeringskenmerk}
                )
            ).first()
        return None if row is None else endpoint_with_school_of(row._mapping)

    async def list_endpoints(
        self,
        *,
        brin: str | None = None,
        kind: EndpointKind | None = None,
        routeringskenmerk: str | None = None,
        active_only: bool = False,
    ) -> Sequence[Endpoint]:
        filters = _EndpointFilters(
            brin is not None, kind is not None, routeringskenmerk is not None, active_only
        )
        values = {
            "match_brin": brin,
            "match_kind": kind.value if kind is not None else None,
            "match_routeringskenmerk": routeringskenmerk,
        }
        async with self._db.transaction(read_only=True) as conn:
            rows = await conn.execute(self._endpoint_list(filters), values)
            return [_endpoint(row._mapping) for row in rows]

    def _endpoint_list(self, filters: _EndpointFilters) -> Select[Any]:
        """The listing for this combination of filters, built on its first use (the broker
        lists a bron school's endpoints for every session it grants)."""
        query = self._endpoint_lists.get(filters)
        if query is not None:
            return query
        query = select(endpoints).order_by(endpoints.c.routeringskenmerk)
        if filters.by_brin:
            query = query.where(endpoints.c.brin == bindparam("match_brin"))
        if filters.by_kind:
            query = query.where(endpoints.c.kind == bindparam("match_kind"))
        if filters.by_routeringskenmerk:
            query = query.where(
                endpoints.c.routeringskenmerk == bindparam("match_routeringskenmerk")
            )
        if filters.active_only:
            # An endpoint of an inactive school is not usable either.
            query = query.join(schools, schools.c.brin == endpoints.c.brin).where(
                endpoints.c.active.is_(True), schools.c.active.is_(True)
            )
        self._endpoint_lists[filters] = query
        return query

    async def set_endpoint_active(
        self, routeringskenmerk: str, *, active: bool, at: dt.datetime
    ) -> Endpoint:
        return await self._change_endpoint(routeringskenmerk, at=at, active=active)

    async def set_endpoint_url(
        self, routeringskenmerk: str, *, url: str, at: dt.datetime
    ) -> Endpoint:
        return await self._change_endpoint(routeringskenmerk, at=at, url=url)

    async def _change_endpoint(
        self, routeringskenmerk: str, *, at: dt.datetime, **values: Any
    ) -> Endpoint:
        where = endpoints.c.routeringskenmerk == routeringskenmerk
        async with self._db.transaction() as conn:
            result = await conn.execute(
                update(endpoints).where(where).values(**values, updated_at=at)
            )
            if result.rowcount == 0:
                raise EndpointNotFound(f"no endpoint {routeringskenmerk}")
            row = (await conn.execute(select(endpoints).where(where))).one()
        return _endpoint(row._mapping)


def endpoint_with_school_query(match: str = "match_routeringskenmerk") -> Select[Any]:
    """An endpoint (the bindparam ``match``) and its school, in one row; also a part of
    other repositories' reads (``SessionRepository.get_with_endpoint``)."""
    return (
        select(
            # What ``_endpoint`` reads, no more: every other column is a value to convert
            # (two timestamps) on every request, for nothing.
            *(endpoints.c[name] for name in _ENDPOINT_FIELDS),
            schools.c.name,
            schools.c.sector,
            schools.c.board,
            schools.c.active.label("school_active"),
        )
        .join(schools, schools.c.brin == endpoints.c.brin)
        .where(endpoints.c.routeringskenmerk == bindparam(match))
    )


def endpoint_with_school_of(row: Any) -> tuple[Endpoint, School]:
    """The endpoint and school of a row of ``endpoint_with_school_query``."""
    return _endpoint(row), _school({**row, "active": row["school_active"]})


class _EndpointFilters(NamedTuple):
    """Which of ``list_endpoints``' filters a listing applies."""

    by_brin: bool
    by_kind: bool
    by_routeringskenmerk: bool
    active_only: bool


def _school(row: Any) -> School:
    return School(
        brin=row["brin"],
        name=row["name"],
        sector=Sector(row["sector"]),
        board=row["board"],
        active=bool(row["active"]),
    )


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        routeringskenmerk=row["routeringskenmerk"],
        brin=row["brin"],
        url=row["url"],
        kind=EndpointKind(row["kind"]),
        active=bool(row["active"]),
    )
