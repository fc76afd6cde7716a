"""Counting and hashing a dossier as it passes, with the size limit enforced on the way."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from traffic_center.domain.errors import DossierTooLarge


class MeteredStream:
    """Wraps the bron's byte stream: size and SHA-256 on the fly, nothing kept."""

    def __init__(self, chunks: AsyncIterator[bytes], *, limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._digest = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.size += len(chunk)
            if self.size > self._limit:
                # The bron sent more than it may (or than it declared): stop here.
                raise DossierTooLarge(f"the dossier exceeds {self._limit} bytes")
            self._digest.update(chunk)
            yield chunk
