"""What a serving process sets for itself at start: its open-files limit and its garbage
collector. Once per process: ``serve`` for itself (and, for the limit, the workers it forks),
each worker for its garbage collector (a spawned interpreter starts with the defaults)."""

from __future__ import annotations

import gc
import resource

# The youngest generation's collection threshold (allocations net of frees). At CPython's
# 700 a busy node collected about once per relay, and a relay's objects, alive while it
# runs, were promoted and collected again in the older generations: with 32 concurrent 1 MB
# relays the collector took 7 % of the node's CPU (gc.callbacks), the full collections 80 ms
# each. At 5,000 it took 2 % and the node's CPU per relay fell by about as much (issue 14,
# bench/README.md). CPython 3.13 raised its own default to 2,000. The older generations keep
# theirs; what waits longer to be collected is at most a few thousand young objects.
GC_YOUNG_THRESHOLD = 5000


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (as Go's runtime does); returns the new limit.

    Every connection, even one still in its handshake, holds a file descriptor; the soft limit
    is often 1,024 while the hard one is far higher.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def tune_garbage_collector() -> None:
    """The youngest generation collected less often (``GC_YOUNG_THRESHOLD``)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
