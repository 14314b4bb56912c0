"""Export files: every format gives back the records as recorded, in order."""

import gzip
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from pipeline.local.simulate import generate_events
from pipeline.replay.recorded import (
    ExportHeader,
    RecordedEvent,
    RecordFileError,
    RecordReader,
    event_time_ms,
    write_records,
)
from schemas.events import load_event, parse_event

START = datetime(2026, 1, 10, tzinfo=UTC)
HEADER = ExportHeader("telemetry.raw", 4, 1, 2)


def recorded(count: int) -> list[tuple[RecordedEvent, dict]]:
    out = []
    offsets = [0, 0, 0, 0]
    for raw in generate_events(3, 20, count, START, 1.0):
        event = parse_event(raw, received_at=datetime.fromisoformat(raw["timestamp"]))
        partition = len(out) % 4
        value = event.to_json()
        moment = event_time_ms(orjson.loads(value))
        record = RecordedEvent(
            partition, offsets[partition], event.key.encode(), value, moment, moment
        )
        offsets[partition] += 1
        out.append((record, orjson.loads(value)))
    return out


def read_back(path: Path) -> tuple[ExportHeader, list[RecordedEvent]]:
    with RecordReader(path, batch_size=7) as reader:
        records = [r for batch in reader.batches() for r in batch]
        return reader.header, records


@pytest.mark.parametrize("suffix", [".ndjson.gz", ".ndjson.zst", ".ndjson", ".parquet"])
def test_every_format_round_trips_partition_offset_key_and_event(tmp_path: Path, suffix: str):
    records = recorded(120)
    path = tmp_path / f"export{suffix}"
    assert write_records(path, HEADER, records) == 120
    header, back = read_back(path)
    assert header == HEADER
    assert [(r.partition, r.offset, r.key, r.event_ms, r.arrival_ms) for r in back] == [
        (r.partition, r.offset, r.key, r.event_ms, r.arrival_ms) for r, _ in records
    ]
    # The same events whatever the format (Parquet keeps the very bytes).
    assert [load_event(r.value) for r in back] == [load_event(r.value) for r, _ in records]
    if suffix == ".parquet":
        assert [r.value for r in back] == [r.value for r, _ in records]


def test_a_file_out_of_offset_order_is_refused(tmp_path: Path):
    records = recorded(10)
    same_partition = [pair for pair in records if pair[0].partition == records[0][0].partition]
    path = tmp_path / "shuffled.ndjson.gz"
    write_records(path, HEADER, list(reversed(same_partition)))
    with pytest.raises(RecordFileError, match="offset order"):
        read_back(path)


def test_a_bad_line_names_its_line_number(tmp_path: Path):
    path = tmp_path / "bad.ndjson.gz"
    with gzip.open(path, "wb") as out:
        out.write(orjson.dumps(HEADER.to_dict()) + b"\n")
        out.write(b'{"partition": 0}\n')
    with pytest.raises(RecordFileError, match="line 2"):
        read_back(path)


def test_an_unknown_file_name_is_refused(tmp_path: Path):
    with pytest.raises(RecordFileError, match="name the file"):
        write_records(tmp_path / "export.csv", HEADER, [])
