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
        # The framework may wrap our exception (Starlette: "response already started"), so
        # look along the whole chain.
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            if isinstance(error, self.expected):
                return False
            seen.add(id(error))
            error = error.__cause__ or error.__context__
        return True


def quiet_expected_aborts(*expected: type[BaseException]) -> None:
    """Install (once per exception type set) a filter dropping uvicorn's report of these."""
    logger = logging.getLogger(UVICORN_ERROR_LOGGER)
    if not any(
        isinstance(f, ExpectedAbortFilter) and f.expected == expected for f in logger.filters
    ):
        logger.addFilter(ExpectedAbortFilter(expected))
