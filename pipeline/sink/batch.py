"""One topic's batch of rows, per table, and the offsets it was read from."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.sink.rows import Table, dead_letter_row, partition_of
from schemas.deadletter import DeadLetter

# ClickHouse's default max_partitions_per_insert_block: one insert block whose rows
# fall into more partitions is refused whole (TOO_MANY_PARTS).
MAX_PARTITIONS_PER_INSERT = 100


@dataclass(frozen=True, slots=True)
class Origin:
    """The record a row came from: where it is, to dead-letter the row if it cannot be stored."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass
class SinkBatch:
    topic: str
    rows: dict[Table, list[tuple]] = field(default_factory=dict)
    # partition → (lowest, highest) offset seen in this batch
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    # records that made no row (invalid, already dead-lettered upstream)
    skipped: int = 0
    # the record of each row, in the order of ``rows``
    origins: dict[Table, list[Origin]] = field(default_factory=dict)

    def add(
        self,
        partition: int,
        offset: int,
        output: tuple[Table, tuple] | list[tuple[Table, tuple]] | None,
        *,
        key: bytes | None = None,
        value: bytes | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        low, high = self.offsets.get(partition, (offset, offset))
        self.offsets[partition] = (min(low, offset), max(high, offset))
        if output is None:
            self.skipped += 1
            return
        origin = Origin(partition, offset, key, value, timestamp_ms)
        # One record may make rows in several tables (an event and its catalog entry).
        for table, row in output if isinstance(output, list) else [output]:
            self.rows.setdefault(table, []).append(row)
            self.origins.setdefault(table, []).append(origin)

    def add_message(
        self, message: Any, output: tuple[Table, tuple] | list[tuple[Table, tuple]] | None
    ) -> None:
        """``add`` for a Kafka message (Faust's): its location, key, value and time."""
        self.add(
            message.partition,
            message.offset,
            output,
            key=message.key,
            value=message.value,
            timestamp_ms=int(message.timestamp * 1000),
        )

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def dedup_token(self, table: Table) -> str:
        """Names exactly the records this table's rows came from.

        A batch re-delivered with the same boundaries makes the same token (and,
        the processors being pure, the same rows), so ClickHouse drops the repeat
        insert; other boundaries are left to ReplacingMergeTree and dedup-proof queries.
        """
        ranges = ",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(self.offsets.items()))
        return f"{self.topic}|{table.name}|{ranges}"

    def inserts(
        self, table: Table, max_partitions: int = MAX_PARTITIONS_PER_INSERT
    ) -> Iterator[tuple[list[int], str]]:
        """(row indexes, dedup token) of each insert of ``table``'s rows.

        Rows are grouped by the table's partition (month) and at most
        ``max_partitions`` partitions go into one insert, so no insert is refused
        for spanning too many. The split depends on the rows only: a re-delivered
        batch makes the same inserts with the same tokens.
        """
        rows = self.rows.get(table, [])
        by_partition: dict[int, list[int]] = {}
        for index, row in enumerate(rows):
            by_partition.setdefault(partition_of(table, row), []).append(index)
        keys = sorted(by_partition)
        token = self.dedup_token(table)
        if len(keys) <= max_partitions:
            yield list(range(len(rows))), token
            return
        for part, start in enumerate(range(0, len(keys), max_partitions)):
            chunk = keys[start : start + max_partitions]
            yield [i for key in chunk for i in by_partition[key]], f"{token}|part{part}"

    def dead_letters(self, table: Table, indexes: list[int], reason: str, detail: str) -> list:
        """``dead_letters`` rows for the records of ``table``'s rows at ``indexes``."""
        origins = self.origins.get(table, [])
        letters = []
        for index in indexes:
            origin = origins[index]
            letter = DeadLetter.of(
                topic=self.topic,
                partition=origin.partition,
                offset=origin.offset,
                key=origin.key,
                value=origin.value,
                reason=reason,
                errors=[{"loc": [table.name], "msg": detail}],
            )
            letters.append(dead_letter_row(letter, origin.timestamp_ms))
        return letters
