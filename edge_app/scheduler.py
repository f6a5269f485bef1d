"""Fair batching of several sources' frames for one backend: round robin, one frame per source per batch.

DeepStream's muxer and Frigate's shared detector do the same thing in their own ways: each
camera's capture runs on its own, its newest frame (or its next one, for files) waits in a slot,
and one inference loop gathers the slots that have a frame into a batch. Taking at most one frame
of a source per batch, and starting each batch after the source that got the last place, gives
every source the same share of the backend whatever their frame rates; a source with no frame
ready (slow, reconnecting, dead) is skipped, never waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

T = TypeVar("T")


class RoundRobin:
    """Which of ``count`` sources fill the next batch.

    ``gather(take, limit)`` asks ``take(i)`` for a frame of source ``i`` (``None``: none ready),
    starting at the source after the last one served, once per source, until ``limit`` frames
    are gathered; it returns ``[(i, frame), ...]`` in that order.
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"round robin over {count} sources")
        self.count = count
        self.next = 0

    def gather(self, take: Callable[[int], T | None], limit: int, skip: Collection[int] = ()) -> list[tuple[int, T]]:
        """Up to ``limit`` ``(source index, frame)`` pairs, one per source, sources in ``skip`` left out."""
        items: list[tuple[int, T]] = []
        if limit < 1:
            return items
        for k in range(self.count):
            i = (self.next + k) % self.count
            if i in skip:
                continue
            item = take(i)
            if item is None:
                continue
            items.append((i, item))
            if len(items) >= limit:
                break
        if items:
            self.next = (items[-1][0] + 1) % self.count
        return items
