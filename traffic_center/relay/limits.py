"""The relay's limits, set from settings; one object per node."""

from __future__ import annotations

from dataclasses import dataclass

# Answers that are not dossiers (problems, notification receipts) are small; read at most this.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RelayLimits:
    connect_timeout_seconds: float
    # Between two reads, not for the whole transfer: a 1 GB dossier takes as long as it takes.
    read_timeout_seconds: float
    max_dossier_bytes: int
    max_in_flight: int
