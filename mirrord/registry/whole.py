"""A small blob handed to ``blob_put`` whole: one bytes object instead of a stream of chunks.

Streaming a blob costs a fixed amount per blob (a reader task, queues, a streamed request body) that
dominates when the blob is a few KiB, as configs and small layers are. A copy reads such a blob whole
(bounded: see ``mirrord.copy.blobs.SMALL_BLOB``) and gives every target a :class:`WholeBlob`: an
HTTP target sends it as one bytes body; any other target iterates it like chunks (one chunk).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable


class WholeBlob:
    """The chunks of ``blob_put`` for a blob read whole. ``read`` gives its bytes: it runs only when
    the target asks (once its upload session is open, so a target that cannot take the blob costs
    the source nothing), and it raises instead of returning bytes that do not match the blob's digest
    and size: like verified chunks (:func:`mirrord.registry.base.verifies_digest`), nobody hashes
    them again."""

    verifies_digest = True

    def __init__(self, read: Callable[[], Awaitable[bytes]]) -> None:
        self._read = read

    async def read(self) -> bytes:
        """The blob's verified bytes (read at the first call; raises when the read failed)."""
        return await self._read()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data = await self._read()
        if data:
            yield data
