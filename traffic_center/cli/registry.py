"""`traffic-center school …` and `traffic-center endpoint …`: the registry."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from traffic_center.admin.registry import RegistryAdmin, new_endpoint, new_school
from traffic_center.cli.context import (
    open_signed_store,
    say,
    settings_from,
    show_records,
    utc_now,
)
from traffic_center.domain.identifiers import (
    parse_brin,
    parse_routeringskenmerk,
    parse_url,
)


async def add_school(args: argparse.Namespace) -> int:
    school = new_school(brin=args.brin, name=args.name, sector=args.sector, board=args.board)
    async with _registry_admin(args) as admin:
        await admin.add_school(school)
    say(f"registered school {school.brin} {school.name} ({school.sector.value})")
    return 0


async def list_schools(args: argparse.Namespace) -> int:
    async with _registry_admin(args, existing=True) as admin:
        schools = await admin.schools()
    show_records(
        [dataclasses.asdict(s) for s in schools],
        as_json=args.json,
        columns=[("BRIN", "brin"), ("SECTOR", "sector"), ("ACTIVE", "active"), ("NAME", "name")],
    )
    return 0


async def deactivate_school(args: argparse.Namespace) -> int:
    return await _set_school_active(args, active=False)


async def reactivate_school(args: argparse.Namespace) -> int:
    return await _set_school_active(args, active=True)


async def _set_school_active(args: argparse.Namespace, *, active: bool) -> int:
    brin = parse_brin(args.brin)  # before the store is opened: bad input writes nothing
    async with _registry_admin(args) as admin:
        if active:
            await admin.reactivate_school(brin)
        else:
            await admin.deactivate_school(brin)
    say(f"{'reactivated' if active else 'deactivated'} school {brin}")
    return 0


async def add_endpoint(args: argparse.Namespace) -> int:
    endpoint = new_endpoint(
        routeringskenmerk=args.routeringskenmerk, brin=args.brin, url=args.url, kind=args.kind
    )
    async with _registry_admin(args) as admin:
        await admin.add_endpoint(endpoint)
    say(f"registered endpoint {endpoint.routeringskenmerk} of {endpoint.brin} at {endpoint.url}")
    return 0


async def list_endpoints(args: argparse.Namespace) -> int:
    async with _registry_admin(args, existing=True) as admin:
        endpoints = await admin.endpoints()
    show_records(
        [dataclasses.asdict(e) for e in endpoints],
        as_json=args.json,
        columns=[
            ("ROUTERINGSKENMERK", "routeringskenmerk"),
            ("BRIN", "brin"),
            ("KIND", "kind"),
            ("ACTIVE", "active"),
            ("URL", "url"),
        ],
    )
    return 0


async def deactivate_endpoint(args: argparse.Namespace) -> int:
    return await _set_endpoint_active(args, active=False)


async def reactivate_endpoint(args: argparse.Namespace) -> int:
    return await _set_endpoint_active(args, active=True)


async def _set_endpoint_active(args: argparse.Namespace, *, active: bool) -> int:
    routeringskenmerk = parse_routeringskenmerk(args.routeringskenmerk)
    async with _registry_admin(args) as admin:
        if active:
            await admin.reactivate_endpoint(routeringskenmerk)
        else:
            await admin.deactivate_endpoint(routeringskenmerk)
    say(f"{'reactivated' if active else 'deactivated'} endpoint {routeringskenmerk}")
    return 0


async def move_endpoint(args: argparse.Namespace) -> int:
    routeringskenmerk = parse_routeringskenmerk(args.routeringskenmerk)
    url = parse_url(args.url)
    async with _registry_admin(args) as admin:
        moved = await admin.move_endpoint(routeringskenmerk, url=url)
    say(f"endpoint {routeringskenmerk} now at {moved.url}")
    return 0


@asynccontextmanager
async def _registry_admin(
    args: argparse.Namespace, *, existing: bool = False
) -> AsyncIterator[RegistryAdmin]:
    async with open_signed_store(settings_from(args), existing=existing) as (store, secret):
        yield RegistryAdmin(store, secret=secret, clock=utc_now)
