"""`traffic-center school …` and `traffic-center endpoint …`: the registry."""

from __future__ import annotations

import argparse
import dataclasses

from traffic_center.admin.registry import RegistryAdmin
from traffic_center.cli.context import (
    open_store,
    print_json,
    print_table,
    say,
    settings_from,
    utc_now,
)
from traffic_center.domain.identifiers import (
    EndpointKind,
    Sector,
    parse_brin,
    parse_endpoint_kind,
    parse_routeringskenmerk,
    parse_sector,
    parse_url,
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
    parse_brin(args.brin)
    parse_sector(args.sector)
    async with open_store(settings_from(args)) as store:
        school = await RegistryAdmin(store, clock=utc_now).add_school(
            brin=args.brin, name=args.name, sector=args.sector, board=args.board
        )
    say(f"registered school {school.brin} {school.name} ({school.sector.value})")
    return 0


async def list_schools(args: argparse.Namespace) -> int:
    async with open_store(settings_from(args)) as store:
        schools = await RegistryAdmin(store, clock=utc_now).schools()
    rows = [dataclasses.asdict(s) for s in schools]
    if args.json:
        print_json(rows)
    else:
        print_table(
            ["BRIN", "SECTOR", "ACTIVE", "NAME"],
            [[r["brin"], str(r["sector"]), _yes(r["active"]), r["name"]] for r in rows],
        )
    return 0


async def deactivate_school(args: argparse.Namespace) -> int:
    parse_brin(args.brin)
    async with open_store(settings_from(args)) as store:
        school = await RegistryAdmin(store, clock=utc_now).deactivate_school(args.brin)
    say(f"deactivated school {school.brin}")
    return 0


async def add_endpoint(args: argparse.Namespace) -> int:
    parse_routeringskenmerk(args.routeringskenmerk)
    parse_brin(args.brin)
    parse_url(args.url)
    parse_endpoint_kind(args.kind)
    async with open_store(settings_from(args)) as store:
        endpoint = await RegistryAdmin(store, clock=utc_now).add_endpoint(
            routeringskenmerk=args.routeringskenmerk, brin=args.brin, url=args.url, kind=args.kind
        )
    say(f"registered endpoint {endpoint.routeringskenmerk} of {endpoint.brin} at {endpoint.url}")
    return 0


async def list_endpoints(args: argparse.Namespace) -> int:
    async with open_store(settings_from(args)) as store:
        endpoints = await RegistryAdmin(store, clock=utc_now).endpoints()
    rows = [dataclasses.asdict(e) for e in endpoints]
    if args.json:
        print_json(rows)
    else:
        print_table(
            ["ROUTERINGSKENMERK", "BRIN", "KIND", "ACTIVE", "URL"],
            [
                [r["routeringskenmerk"], r["brin"], str(r["kind"]), _yes(r["active"]), r["url"]]
                for r in rows
            ],
        )
    return 0


async def deactivate_endpoint(args: argparse.Namespace) -> int:
    parse_routeringskenmerk(args.routeringskenmerk)
    async with open_store(settings_from(args)) as store:
        endpoint = await RegistryAdmin(store, clock=utc_now).deactivate_endpoint(
            args.routeringskenmerk
        )
    say(f"deactivated endpoint {endpoint.routeringskenmerk}")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
