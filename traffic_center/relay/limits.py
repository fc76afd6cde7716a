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
    # A fair share of the slots (docs/security.md): one doel school, or one bron endpoint, never
    # holds more than this many, so a school trickling from its own LAS (or never reading) cannot
    # make the others wait. Capped at ``max_in_flight``.
    max_per_doel_school: int = 16
    max_per_bron_endpoint: int = 16
    # The whole relay, from taking the slot to the last byte: however slowly both sides move,
    # the slot comes back by then.
    total_seconds: float = 900.0
    # How long one write toward the doel may wait for it to read (its TCP window stays shut).
    doel_write_timeout_seconds: float = 30.0
