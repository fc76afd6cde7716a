"""Keeping expected stream aborts out of uvicorn's error log.

The only way an ASGI app can make the server drop a connection mid-body is to raise; uvicorn
then logs "Exception in ASGI application" with a traceback. For an abort we meant (a relay
the bron broke off, a reference LAS scenario), that traceback is noise: the exchange's own
log line and record already say what happened.
"""

from __future__ import annotations

import logging

UVICORN_ERROR_LOGGER = "uvicorn.error"


class ExpectedAbortFilter(logging.Filter):
    def __init__(self, expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not caused_by(error, self.expected)


def caused_by(error: BaseException, expected: tuple[type[BaseException], ...]) -> bool:
    """Whether ``error`` is one of ``expected`` or was raised because of one. The framework
    may wrap ours (Starlette: "response already started"), so the whole chain is looked at."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, expected):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def quiet_expected_aborts(*expected: type[BaseException]) -> None:
    """Install (once per exception type set) a filter dropping uvicorn's report of these."""
    logger = logging.getLogger(UVICORN_ERROR_LOGGER)
    if not any(
        isinstance(f, ExpectedAbortFilter) and f.expected == expected for f in logger.filters
    ):
        logger.addFilter(ExpectedAbortFilter(expected))
