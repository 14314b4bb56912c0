"""One topic's batch of rows, per table, and the offsets it was read from."""

from dataclasses import dataclass, field

from pipeline.sink.rows import Table


@dataclass
class SinkBatch:
    topic: str
    rows: dict[Table, list[tuple]] = field(default_factory=dict)
    # partition → (lowest, highest) offset seen in this batch
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)
    # records that made no row (invalid, already dead-lettered upstream)
    skipped: int = 0

    def add(self, partition: int, offset: int, output: tuple[Table, tuple] | None) -> None:
        low, high = self.offsets.get(partition, (offset, offset))
        self.offsets[partition] = (min(low, offset), max(high, offset))
        if output is None:
            self.skipped += 1
            return
        table, row = output
        self.rows.setdefault(table, []).append(row)

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
