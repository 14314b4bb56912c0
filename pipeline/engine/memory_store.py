"""User states in a plain dict: for replays from a file, where nothing needs to survive."""

from collections.abc import Iterator
from typing import Generic, TypeVar

State = TypeVar("State")


class MemoryStateStore(Generic[State]):
    def __init__(self) -> None:
        self._states: dict[int, dict[str, State]] = {}
        self._watermarks: dict[int, int] = {}

    def put_watermark(self, partition: int, watermark_ms: int) -> None:
        self._watermarks[partition] = watermark_ms

    def watermark(self, partition: int) -> int | None:
        return self._watermarks.get(partition)

    def get(self, key: str, partition: int) -> State | None:
        return self._states.get(partition, {}).get(key)

    def put(self, key: str, partition: int, state: State) -> None:
        self._states.setdefault(partition, {})[key] = state

    def delete(self, key: str, partition: int) -> None:
        self._states.get(partition, {}).pop(key, None)

    def scan(self, partition: int) -> Iterator[tuple[str, State]]:
        yield from list(self._states.get(partition, {}).items())

    def __len__(self) -> int:
        return sum(len(states) for states in self._states.values())
