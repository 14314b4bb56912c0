"""Per-partition event-time watermarks and the deadlines waiting on them.

A deadline (a cart going idle, a held quiet-hours nudge) fires when its
partition's watermark passes it. The watermark is the highest event time seen
on the partition, each event's time clamped to when the server received it so
one shopper's fast clock cannot fire everyone's deadlines. Only what is read
from the partition moves it: events, and the watermark records a live worker
appends while the partition is idle and caught up (schemas/engine_records.py), so
a replay of the same log moves it exactly as the live run did.
"""

import heapq
from dataclasses import dataclass, field


@dataclass(slots=True)
class _PartitionDeadlines:
    watermark: int = -1
    heap: list[tuple[int, str]] = field(default_factory=list)
    # The live deadline per key; heap entries that disagree are stale and skipped.
    current: dict[str, int] = field(default_factory=dict)


class PartitionClock:
    def __init__(self) -> None:
        self._partitions: dict[int, _PartitionDeadlines] = {}

    def _partition(self, partition: int) -> _PartitionDeadlines:
        found = self._partitions.get(partition)
        if found is None:
            found = self._partitions[partition] = _PartitionDeadlines()
        return found

    def watermark(self, partition: int) -> int:
        return self._partition(partition).watermark

    def observe(self, partition: int, event_ms: int) -> bool:
        """Move the watermark up to ``event_ms``; whether it moved."""
        p = self._partition(partition)
        if event_ms > p.watermark:
            p.watermark = event_ms
            return True
        return False

    def next_deadline(self, partition: int) -> int | None:
        """The earliest deadline still pending on the partition."""
        p = self._partitions.get(partition)
        if p is None:
            return None
        heap, current = p.heap, p.current
        while heap and current.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale: rescheduled or cleared since
        return heap[0][0] if heap else None

    def schedule(self, partition: int, key: str, deadline_ms: int | None) -> None:
        p = self._partition(partition)
        if deadline_ms is None:
            p.current.pop(key, None)
            return
        if p.current.get(key) == deadline_ms:
            return
        p.current[key] = deadline_ms
        heapq.heappush(p.heap, (deadline_ms, key))

    def pop_due(self, partition: int) -> list[str]:
        """Keys whose deadline the watermark has reached, earliest first, each once."""
        p = self._partitions.get(partition)
        if p is None:
            return []
        due = []
        heap, current, watermark = p.heap, p.current, p.watermark
        while heap and heap[0][0] <= watermark:
            deadline, key = heapq.heappop(heap)
            if current.get(key) == deadline:
                del current[key]
                due.append(key)
        return due

    def forget(self, partitions: set[int]) -> None:
        """Drop partitions this worker no longer owns; their new owner rebuilds them."""
        for number in partitions:
            self._partitions.pop(number, None)

    def pending(self, partition: int) -> int:
        p = self._partitions.get(partition)
        return len(p.current) if p else 0
