"""Peak resident memory of a child process, for the benchmarks and the memory test.

psutil is a development dependency: only bench/ and tests sample memory, so it is imported
when a sampler is made, and the installed package imports without it.
"""

from __future__ import annotations

import threading
import time


class RssSampler:
    """Samples one process's RSS in a thread; ``peak`` is the highest seen while running."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self._interval)
