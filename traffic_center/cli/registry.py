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
    EndpointKind,
    Sector,
    parse_brin,
    parse_routeringskenmerk,
)


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    school = subparsers.add_parser("school", help="register schools")
    verbs = school.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="register a school")
    add.add_argument("--brin", required=True, help="two digits and two letters, e.g. 12AB")
    add.add_argument("--name", required=True)
    add.add_argument("--sector", required=True, help="|".join(s.value for s in Sector))
    add.add_argument("--board", help="the school board (bevoegd gezag)")
    add.set_defaults(handler=add_school)
    listing = verbs.add_parser("list", help="list schools")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_schools)
    deactivate = verbs.add_parser("deactivate", help="stop a school from exchanging")
    deactivate.add_argument("brin")
    deactivate.set_defaults(handler=deactivate_school)

    endpoint = subparsers.add_parser("endpoint", help="register endpoints (aanleverpunten)")
    verbs = endpoint.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="register an endpoint of a school's LAS")
    add.add_argument("--routeringskenmerk", required=True, help="20 digits")
    add.add_argument("--brin", required=True)
    add.add_argument("--url", required=True, help="https base URL of the LAS endpoint")
    add.add_argument("--kind", default="OV", help="|".join(k.value for k in EndpointKind))
    add.set_defaults(handler=add_endpoint)
    listing = verbs.add_parser("list", help="list endpoints")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_endpoints)
    deactivate = verbs.add_parser("deactivate", help="stop an endpoint from exchanging")
    deactivate.add_argument("routeringskenmerk")
    deactivate.set_defaults(handler=deactivate_endpoint)


async def add_school(args: argparse.Namespace) -> int:
    school = new_school(brin=args.brin, name=args.name, sector=args.sector, board=args.board)
    async with _registry_admin(args) as admin:
        await admin.add_school(school)
    say(f"registered school {school.brin} {school.name} ({school.sector.value})")
    return 0


async def list_schools(args: argparse.Namespace) -> int:
    async with _registry_admin(args) as admin:
        schools = await admin.schools()
    show_records(
        [dataclasses.asdict(s) for s in schools],
        as_json=args.json,
        columns=[("BRIN", "brin"), ("SECTOR", "sector"), ("ACTIVE", "active"), ("NAME", "name")],
    )
    return 0


async def deactivate_school(args: argparse.Namespace) -> int:
    brin = parse_brin(args.brin)  # before the store is opened: bad input writes nothing
    async with _registry_admin(args) as admin:
        await admin.deactivate_school(brin)
    say(f"deactivated school {brin}")
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
    async with _registry_admin(args) as admin:
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
    routeringskenmerk = parse_routeringskenmerk(args.routeringskenmerk)
    async with _registry_admin(args) as admin:
        await admin.deactivate_endpoint(routeringskenmerk)
    say(f"deactivated endpoint {routeringskenmerk}")
    return 0


@asynccontextmanager
async def _registry_admin(args: argparse.Namespace) -> AsyncIterator[RegistryAdmin]:
    async with open_signed_store(settings_from(args)) as (store, secret):
        yield RegistryAdmin(store, secret=secret, clock=utc_now)
