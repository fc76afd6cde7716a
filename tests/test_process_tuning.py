"""What a serving process sets for itself: the garbage collector's young threshold."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from traffic_center.server.process import GC_YOUNG_THRESHOLD, tune_garbage_collector
from traffic_center.server.workers import app_from_env


@pytest.fixture
def defaults() -> Iterator[None]:
    """CPython's own thresholds for the test; the process's as they were afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@pytest.mark.usefixtures("defaults")
def test_a_serving_process_collects_its_young_objects_less_often() -> None:
    tune_garbage_collector()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("defaults")
def test_each_worker_tunes_its_own_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker is a spawned interpreter: the supervisor's setting does not reach it."""
    monkeypatch.setenv("TC_HOME", str(tmp_path))
    app_from_env()
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
