"""Recorded raw telemetry: one record as logged, and the export file formats.

A record keeps what the live engine saw: partition, offset, key and the value
bytes, plus its event time (what ``--from/--to`` select on). Files:

- ``.ndjson.gz`` / ``.ndjson.zst`` / ``.ndjson``: a header line
  ``{"intentflow_export": 1, ...}``, then one ``{"partition", "offset", "key",
  "event"}`` object per line, the event as a JSON object (readable with jq).
- ``.parquet``: columns ``partition, offset, key, event_time, value`` (the
  value byte-exact), the header in the schema metadata.

Records are written per partition in offset order, partitions interleaved in
arrival order (pipeline/replay/source.py); readers check the offset order,
because the engine's per-user outcome depends on it (late events included).
"""

import gzip
import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.time import epoch_ms
from schemas.topics import DEFAULT_USER_PARTITIONS

# 2: the log holds the engine's own records (schemas/engine_records.py), hand-overs
# among them; 1 (still read): hand-overs went through another topic.
FORMAT_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
HEADER_FIELD = "intentflow_export"
PARQUET_METADATA_KEY = b"intentflow_export"
SUFFIXES = (".ndjson.gz", ".ndjson.zst", ".ndjson", ".parquet")
_PARQUET_SCHEMA = pa.schema(
    [
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("event_time", pa.timestamp("ms", tz="UTC")),
        ("arrival_time", pa.timestamp("ms", tz="UTC")),
        ("value", pa.binary()),
    ]
)
_ROW_GROUP = 50_000


class RecordFileError(ValueError):
    """A file that is not a readable export, with the line or row and why."""


class RecordedEvent(NamedTuple):
    """A tuple, not a frozen dataclass: replays build millions, ~5x cheaper each."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event_ms: int
    # When the collector received it (``received_at``; else the event time): the order
    # the live engine met records across partitions, which identity hand-overs depend on.
    arrival_ms: int


@dataclass(frozen=True, slots=True)
class ExportHeader:
    topic: str
    partitions: int
    # Event-time range the records were selected by (epoch ms; None: unbounded).
    from_ms: int | None
    to_ms: int | None
    version: int = FORMAT_VERSION

    @property
    def handovers_logged(self) -> bool:
        return self.version >= 2

    def to_dict(self) -> dict[str, Any]:
        return {
            HEADER_FIELD: self.version,
            "topic": self.topic,
            "partitions": self.partitions,
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ExportHeader":
        version = raw.get(HEADER_FIELD)
        if version not in READABLE_VERSIONS:
            raise RecordFileError(f"unsupported export format {version!r}")
        return cls(
            raw["topic"], int(raw["partitions"]), raw.get("from_ms"), raw.get("to_ms"), version
        )


def file_format(path: Path) -> str:
    """``ndjson`` or ``parquet``, by the file name's ending."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".ndjson.gz", ".ndjson.zst", ".ndjson", ".jsonl.gz", ".jsonl")):
        return "ndjson"
    raise RecordFileError(f"{path.name}: name the file *{', *'.join(SUFFIXES)}")


def _open_text_stream(path: Path, mode: str) -> IO[bytes]:
    name = path.name.lower()
    if name.endswith(".gz"):
        # Level 6: a day of telemetry compresses ~8x at a fraction of level 9's cost.
        return gzip.open(path, mode, compresslevel=6) if "w" in mode else gzip.open(path, mode)
    if name.endswith(".zst"):
        try:
            from backports import zstd
        except ImportError:  # pragma: no cover - depends on the environment
            raise RecordFileError(".zst needs the backports.zstd package; use .gz") from None
        return zstd.open(path, mode)
    return open(path, mode)


# --- event time ---------------------------------------------------------------


def event_time_ms(event: Any, field: str = "timestamp") -> int | None:
    """The event's own timestamp (epoch ms) from its JSON object; None when unreadable."""
    if not isinstance(event, dict):
        return None
    stamp = event.get(field)
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return epoch_ms(moment)


def arrival_ms(event: Any, event_ms: int) -> int:
    received = event_time_ms(event, "received_at")
    return received if received is not None else event_ms


# --- writing ------------------------------------------------------------------


class RecordWriter:
    """Writes records in the format the path names; use as a context manager."""

    def __init__(self, path: Path, header: ExportHeader) -> None:
        self.path = path
        self._header = header
        self.format = file_format(path)
        self.count = 0
        self._opened = False
        self._stream: IO[bytes] | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._pending: list[RecordedEvent] = []

    def __enter__(self) -> "RecordWriter":
        return self

    def _open(self) -> None:
        self._opened = True
        header = self._header
        if self.format == "ndjson":
            self._stream = _open_text_stream(self.path, "wb")
            self._stream.write(orjson.dumps(header.to_dict()) + b"\n")
        else:
            schema = _PARQUET_SCHEMA.with_metadata(
                {PARQUET_METADATA_KEY: orjson.dumps(header.to_dict())}
            )
            self._parquet = pq.ParquetWriter(self.path, schema, compression="zstd")

    def write(self, record: RecordedEvent, event: dict[str, Any]) -> None:
        """``event`` is the record's value already parsed (the reader needed its time)."""
        if not self._opened:
            self._open()
        self.count += 1
        if self._stream is not None:
            key = record.key
            line: dict[str, Any] = {"partition": record.partition, "offset": record.offset}
            try:
                line["key"] = key.decode() if key is not None else None
            except UnicodeDecodeError:
                line["key_hex"] = key.hex()
            line["event"] = event
            self._stream.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
            return
        self._pending.append(record)
        if len(self._pending) >= _ROW_GROUP:
            self._flush_parquet()

    def _flush_parquet(self) -> None:
        if not self._pending or self._parquet is None:
            return
        rows = self._pending
        self._pending = []
        table = pa.Table.from_pydict(
            {
                "partition": [r.partition for r in rows],
                "offset": [r.offset for r in rows],
                "key": [r.key for r in rows],
                "event_time": [r.event_ms for r in rows],
                "arrival_time": [r.arrival_ms for r in rows],
                "value": [r.value for r in rows],
            },
            schema=self._parquet.schema,
        )
        self._parquet.write_table(table)

    def __exit__(self, *exc_info: object) -> None:
        if not self._opened:
            self._open()
        if self._stream is not None:
            self._stream.close()
        if self._parquet is not None:
            self._flush_parquet()
            self._parquet.close()


# --- reading ------------------------------------------------------------------


class RecordReader:
    """Reads a file back in its order, checking each partition's offsets only increase.

    Use as a context manager. ``header`` is known once it is open; ``progress()``
    is the fraction of the file read so far (for an ETA).
    """

    def __init__(self, path: Path, batch_size: int = 10_000) -> None:
        self.path = path
        self.format = file_format(path)
        self.batch_size = batch_size
        self.header = ExportHeader("(file)", DEFAULT_USER_PARTITIONS, None, None)
        self.total: int | None = None
        self._raw_size = max(path.stat().st_size, 1)
        self._raw: IO[bytes] | None = None
        self._lines: IO[bytes] | None = None
        self._first_line: bytes | None = None
        self._parquet: pq.ParquetFile | None = None
        self._rows_read = 0

    def __enter__(self) -> "RecordReader":
        if self.format == "parquet":
            self._parquet = pq.ParquetFile(self.path)
            meta = self._parquet.schema_arrow.metadata or {}
            if PARQUET_METADATA_KEY in meta:
                self.header = ExportHeader.from_dict(orjson.loads(meta[PARQUET_METADATA_KEY]))
            self.total = self._parquet.metadata.num_rows
            return self
        self._raw = open(self.path, "rb")
        self._lines = self._decompressed(self._raw)
        first = self._lines.readline()
        if first.strip() and HEADER_FIELD.encode() in first[:64]:
            self._parse_line(first, 1)
        else:
            self._first_line = first
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._lines is not None:
            self._lines.close()
        if self._raw is not None:
            self._raw.close()
        if self._parquet is not None:
            self._parquet.close()

    def progress(self) -> float | None:
        if self.total:
            return self._rows_read / self.total
        if self._raw is not None and not self._raw.closed:
            return min(self._raw.tell() / self._raw_size, 1.0)
        return None

    def batches(self) -> Iterator[list[RecordedEvent]]:
        last: dict[int, int] = {}
        source = self._parquet_batches() if self._parquet else self._ndjson_batches()
        for batch in source:
            for record in batch:
                previous = last.get(record.partition, -1)
                if record.offset <= previous:
                    raise RecordFileError(
                        f"{self.path.name}: partition {record.partition} offset {record.offset} "
                        f"after {previous}: records must be in offset order per partition"
                    )
                last[record.partition] = record.offset
            self._rows_read += len(batch)
            yield batch

    def _parquet_batches(self) -> Iterator[list[RecordedEvent]]:
        assert self._parquet is not None
        for chunk in self._parquet.iter_batches(batch_size=self.batch_size):
            # Column by column: ``to_pydict`` would also make a zoned datetime of every
            # time (~14 µs a row), which are wanted as integers.
            column = chunk.column
            times = chunk.column("event_time").cast(pa.int64()).to_pylist()
            arrivals = chunk.column("arrival_time").cast(pa.int64()).to_pylist()
            yield [
                RecordedEvent(p, o, k, v, t, a)
                for p, o, k, v, t, a in zip(
                    column("partition").to_pylist(),
                    column("offset").to_pylist(),
                    column("key").to_pylist(),
                    column("value").to_pylist(),
                    times,
                    arrivals,
                    strict=True,
                )
            ]

    def _ndjson_batches(self) -> Iterator[list[RecordedEvent]]:
        assert self._lines is not None
        lines = itertools.chain([self._first_line] if self._first_line else [], self._lines)
        first_number = 1 if self._first_line else 2
        batch: list[RecordedEvent] = []
        for number, line in enumerate(lines, start=first_number):
            if not line.strip():
                continue
            record = self._parse_line(line, number)
            if record is not None:
                batch.append(record)
                if len(batch) >= self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _decompressed(self, raw: IO[bytes]) -> IO[bytes]:
        name = self.path.name.lower()
        if name.endswith(".gz"):
            return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), 1 << 20)
        if name.endswith(".zst"):
            try:
                from backports import zstd
            except ImportError:  # pragma: no cover - depends on the environment
                raise RecordFileError(".zst needs the backports.zstd package") from None
            return io.BufferedReader(zstd.ZstdFile(raw, mode="rb"), 1 << 20)
        return raw

    def _parse_line(self, line: bytes, number: int) -> RecordedEvent | None:
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise RecordFileError(f"{self.path.name} line {number}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise RecordFileError(f"{self.path.name} line {number}: not a JSON object")
        if HEADER_FIELD in item:
            self.header = ExportHeader.from_dict(item)
            return None
        try:
            event = item["event"]
            partition, offset = int(item["partition"]), int(item["offset"])
            key_text, key_hex = item.get("key"), item.get("key_hex")
        except (KeyError, TypeError, ValueError):
            raise RecordFileError(
                f"{self.path.name} line {number}: needs partition, offset, key and event"
            ) from None
        key = key_text.encode() if key_text is not None else None
        if key_hex is not None:
            key = bytes.fromhex(key_hex)
        moment = event_time_ms(event) or 0
        # An unplaceable event still replays: the engine dead-letters it, as live did.
        value = orjson.dumps(event)
        return RecordedEvent(partition, offset, key, value, moment, arrival_ms(event, moment))


def write_records(
    path: Path, header: ExportHeader, records: Iterable[tuple[RecordedEvent, dict[str, Any]]]
) -> int:
    with RecordWriter(path, header) as writer:
        for record, event in records:
            writer.write(record, event)
    return writer.count
