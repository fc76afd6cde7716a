"""Logging: structlog, JSON lines on stdout (readable console lines on a terminal).

uvicorn's and the libraries' own records go through the same formatter, so an operator's log
shipper sees one format. No line carries a payload, a zoeksleutel or a pupil number: the
exchange line holds metadata only, and request bodies are never logged. A line an attacker
can make repeat (asyncio's accept error) is throttled to one per interval, with a count.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

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
    for name in ("httpx", "httpcore", "asyncio", "hpack"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    throttle_accept_errors()


def raised_at(exc: BaseException) -> str | None:
    """file:line of the innermost frame of an exception: enough to find a bug, and no values
    (an exception's message or locals could quote a dossier or a zoeksleutel)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else None


class Throttle:
    """At most one report per ``every`` seconds; ``hit`` returns how many it stands for."""

    def __init__(self, every: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    def hit(self) -> int | None:
        now = self._clock()
        self._held += 1
        if self._last is not None and now - self._last < self.every:
            return None
        self._last, count, self._held = now, self._held, 0
        return count


# Out of file descriptors, asyncio logs this at ERROR on every accept attempt (seen here:
# 444,707 lines in 40 s). One line per interval, with the count, says as much.
ACCEPT_ERROR = "socket.accept() out of system resource"
ACCEPT_ERROR_LOG_SECONDS = 10.0


class AcceptErrorThrottle(logging.Filter):
    """On the ``asyncio`` logger: one accept-error line per interval, with how many it stands for."""

    def __init__(self, every: float = ACCEPT_ERROR_LOG_SECONDS) -> None:
        super().__init__()
        self._throttle = Throttle(every)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(ACCEPT_ERROR):
            return True
        count = self._throttle.hit()
        if count is None:
            return False
        record.msg = f"{ACCEPT_ERROR} ({count} times since the last such line)"
        record.args = ()
        return True


def throttle_accept_errors() -> None:
    """Idempotent: installs the filter on the ``asyncio`` logger once."""
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorThrottle) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(AcceptErrorThrottle())
