"""What every command shares: settings from flags and env, the store, the clock, output."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from traffic_center.admin.store import open_signed_store, open_store, utc_now
from traffic_center.cli.output import say, show_records
from traffic_center.settings import Settings

__all__ = ["open_signed_store", "open_store", "say", "settings_from", "show_records", "utc_now"]


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Flags win over TC_* variables; only flags the user gave are passed."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "home", None) is not None:
        given["home"] = Path(args.home)
    return Settings(**given)
