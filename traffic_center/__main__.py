"""Lets `python -m traffic_center` behave like the `traffic-center` command."""

from traffic_center.cli.main import run

run()
