"""Logging: structlog, JSON lines on stdout (readable console lines on a terminal).

uvicorn's and the libraries' own records go through the same formatter, so an operator's log
shipper sees one format. No line carries a payload, a zoeksleutel or a pupil number: the
exchange line holds metadata only, and request bodies are never logged.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from traffic_center.server.limits import throttle_accept_errors

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    """Idempotent; ``json_lines`` defaults to JSON unless stdout is a terminal."""
    if json_lines is None:
        json_lines = not sys.stdout.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Libraries that would log request details at debug level stay at warning.
    for name in ("httpx", "httpcore", "aiosqlite", "asyncio", "hpack"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    throttle_accept_errors()
