"""The local warehouse answers unchanged clickhouse-connect like a ClickHouse server."""

import datetime as dt
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.local.ports import free_port
from pipeline.local.warehouse import wait_until_ready

HOST = "127.0.0.1"
ROWS = 100_000
COLUMNS = ["id", "ts", "kind", "score", "note", "qty", "tags", "body"]
EVENTS_DDL = """
CREATE TABLE {table} (
    id UInt64, ts DateTime64(3, 'UTC'), kind LowCardinality(String), score Float64,
    note Nullable(String), qty Nullable(Int64), tags Array(String), body String
) ENGINE = MergeTree ORDER BY id
"""


class WarehouseProcess:
    def __init__(self, data_path: Path, port: int) -> None:
        self.data_path = data_path
        self.port = port
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "pipeline.local.warehouse"),
                *("--data-path", str(data_path), "--host", HOST, "--port", str(port)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_until_ready(self) -> "WarehouseProcess":
        try:
            wait_until_ready(HOST, self.port, timeout_s=30)
        except TimeoutError:
            self.process.kill()
            raise AssertionError(f"warehouse did not start: {self.process.communicate()}") from None
        return self

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=30)
        return self.process.returncode, stderr

    def client(self, **kwargs: object) -> Client:
        return clickhouse_connect.get_client(
            host=HOST, port=self.port, username="default", password="", **kwargs
        )


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseProcess]:
    running = WarehouseProcess(tmp_path_factory.mktemp("warehouse"), free_port()).wait_until_ready()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(warehouse: WarehouseProcess) -> Client:
    return warehouse.client()


def event_rows(count: int, start: int = 0) -> list[list[object]]:
    # Naive UTC: clickhouse-connect returns DateTime64(3, 'UTC') values without tzinfo.
    base = dt.datetime(2024, 1, 1)
    return [
        [
            i,
            base + dt.timedelta(milliseconds=i * 37),
            ("view", "cart", "buy")[i % 3],
            i / 7,
            None if i % 5 == 0 else f"note-{i}-é",
            None if i % 4 == 0 else i - 50_000,
            [f"t{j}" for j in range(i % 4)],
            f"body-{i}\t'\"\\",
        ]
        for i in range(start, start + count)
    ]


@pytest.mark.parametrize("compress", [False, True, "lz4", "zstd", "gzip"])
def test_one_insert_of_100k_mixed_rows_reads_back_identical(
    warehouse: WarehouseProcess, compress: bool | str
) -> None:
    client = warehouse.client(compress=compress)
    table = f"events_{str(compress).lower()}"
    client.command(EVENTS_DDL.format(table=table))
    rows = event_rows(ROWS)

    summary = client.insert(table, rows, column_names=COLUMNS)

    assert summary.written_rows == ROWS
    back = client.query(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY id").result_rows
    assert len(back) == ROWS
    mismatches = [(got, want) for got, want in zip(back, rows, strict=True) if list(got) != want]
    assert mismatches == []


@pytest.mark.parametrize(
    "value",
    [
        "x' OR 1=1 --",
        "'; DROP TABLE params_probe; --",
        "{v:String}",
        "back\\slash\ttab\nnewline",
        'quote" and `tick`',
        "ünïcødé ✓",
        "",
        "x'" * 3000,  # long enough that clickhouse-connect sends it as multipart form data
    ],
)
def test_bound_parameters_come_back_as_data(client: Client, value: str) -> None:
    client.command(
        "CREATE TABLE IF NOT EXISTS params_probe (s String) ENGINE = MergeTree ORDER BY s"
    )

    echoed = client.query("SELECT {v:String} AS v, length(v)", parameters={"v": value}).result_rows
    matched = client.command(
        "SELECT count() FROM params_probe WHERE s = {v:String}", parameters={"v": value}
    )

    assert echoed == [(value, len(value.encode()))]
    assert matched == 0
    assert client.command("EXISTS TABLE params_probe") == 1


def test_typed_parameters_bind(client: Client) -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123000)
    result = client.query(
        "SELECT {n:Int64} + 1, {tags:Array(String)}, {at:DateTime64(3)}, {maybe:Nullable(String)}",
        parameters={"n": -42, "tags": ["a'b", "c"], "at": moment, "maybe": None},
    ).result_rows
    assert result == [(-41, ["a'b", "c"], moment, None)]


def test_sql_error_raises_database_error_and_server_keeps_serving(client: Client) -> None:
    with pytest.raises(DatabaseError) as raised:
        client.query("SELECT * FROM no_such_table")
    assert raised.value.code == 60
    assert "UNKNOWN_TABLE" in str(raised.value) and "no_such_table" in str(raised.value)

    with pytest.raises(DatabaseError, match="SYNTAX_ERROR"):
        client.command("SELEC 1")

    assert client.command("SELECT 40 + 2") == 42


def test_failed_insert_is_reported_and_the_next_one_succeeds(client: Client) -> None:
    client.command("CREATE TABLE strict_numbers (n UInt8) ENGINE = MergeTree ORDER BY n")
    with pytest.raises(DatabaseError):
        client.insert("no_such_table", [[1]], column_names=["n"])
    with pytest.raises(DatabaseError, match=r"NO_SUCH_COLUMN_IN_TABLE|THERE_IS_NO_COLUMN"):
        client.raw_insert("strict_numbers", ["missing"], "1\n", fmt="TSV")

    client.insert("strict_numbers", [[7], [8]], column_names=["n"])
    assert client.query("SELECT n FROM strict_numbers ORDER BY n").result_rows == [(7,), (8,)]


def test_insert_the_engine_refuses_is_an_error_not_a_silent_success(client: Client) -> None:
    """Rows over more than max_partitions_per_insert_block (100) partitions: ClickHouse
    refuses the insert (TOO_MANY_PARTS); the local warehouse must say so, not answer 200."""
    client.command(
        "CREATE TABLE monthly (n UInt32, ts DateTime64(3, 'UTC'))"
        " ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY n"
    )
    rows = [[n, dt.datetime(2000, 1, 1) + dt.timedelta(days=31 * n)] for n in range(101)]

    with pytest.raises(DatabaseError, match="TOO_MANY_PARTS") as raised:
        client.insert("monthly", rows, column_names=["n", "ts"])

    assert raised.value.code == 252
    assert client.command("SELECT count() FROM monthly") == 0
    # A hundred partitions is within the limit, and stored.
    client.insert("monthly", rows[:100], column_names=["n", "ts"])
    assert client.command("SELECT count() FROM monthly") == 100


def test_ping_command_arrow_and_dataframe(warehouse: WarehouseProcess, client: Client) -> None:
    assert client.ping()
    connection = http.client.HTTPConnection(HOST, warehouse.port, timeout=5)
    connection.request("GET", "/ping")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"Ok.\n")
    connection.close()

    assert client.command("SELECT 'a', 2") == ["a", "2"]
    table = client.query_arrow("SELECT number AS n, toString(number) AS s FROM numbers(3)")
    assert table.column("n").to_pylist() == [0, 1, 2]
    assert table.column("s").to_pylist() == ["0", "1", "2"]
    frame = client.query_df("SELECT number AS n FROM numbers(4)")
    assert frame["n"].tolist() == [0, 1, 2, 3]


def test_settings_apply_per_query_and_set_persists_in_the_session(
    warehouse: WarehouseProcess, client: Client
) -> None:
    default = client.command("SELECT getSetting('max_block_size')")

    per_query = client.query(
        "SELECT getSetting('max_block_size')", settings={"max_block_size": 777}
    )

    assert per_query.result_rows == [(777,)]
    assert client.command("SELECT getSetting('max_block_size')") == default
    client.command("SET max_block_size = 1234")
    assert client.command("SELECT getSetting('max_block_size')") == 1234
    sessionless = warehouse.client(autogenerate_session_id=False)
    assert sessionless.command("SELECT getSetting('max_block_size')") == default


def test_insert_arrow_table(client: Client) -> None:
    table = pa.table({"id": pa.array([1, 2, 3], pa.uint64()), "name": ["a", None, "c"]})
    client.command(
        "CREATE TABLE arrow_rows (id UInt64, name Nullable(String)) ENGINE = MergeTree ORDER BY id"
    )

    client.insert_arrow("arrow_rows", table)

    assert client.query("SELECT id, name FROM arrow_rows ORDER BY id").result_rows == [
        (1, "a"),
        (2, None),
        (3, "c"),
    ]


def test_database_argument_selects_the_database(
    warehouse: WarehouseProcess, client: Client
) -> None:
    client.command("CREATE DATABASE IF NOT EXISTS analytics")
    client.command("CREATE TABLE analytics.marker (x UInt8) ENGINE = Memory")
    scoped = warehouse.client(database="analytics")

    assert scoped.command("SELECT currentDatabase()") == "analytics"
    assert scoped.command("EXISTS TABLE marker") == 1
    assert client.command("SELECT currentDatabase()") == "default"


def test_concurrent_clients_insert_and_query(warehouse: WarehouseProcess, client: Client) -> None:
    client.command(
        "CREATE TABLE concurrent (worker UInt8, i UInt32) ENGINE = MergeTree ORDER BY (worker, i)"
    )
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            own = warehouse.client(compress=bool(worker % 2))
            for batch in range(5):
                rows = [[worker, batch * 1000 + i] for i in range(1000)]
                own.insert("concurrent", rows, column_names=["worker", "i"])
                seen = own.command(
                    "SELECT count() FROM concurrent WHERE worker = {w:UInt8}",
                    parameters={"w": worker},
                )
                assert seen == (batch + 1) * 1000
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert client.query(
        "SELECT worker, count() FROM concurrent GROUP BY worker ORDER BY worker"
    ).result_rows == [(worker, 5000) for worker in range(8)]


def test_data_survives_restart_and_shutdown_is_clean(tmp_path: Path) -> None:
    first = WarehouseProcess(tmp_path / "data", free_port()).wait_until_ready()
    first.client().command("CREATE TABLE kept (x UInt32) ENGINE = MergeTree ORDER BY x")
    first.client().insert("kept", [[1], [2], [3]], column_names=["x"])
    returncode, stderr = first.stop()
    assert returncode == 0, stderr

    second = WarehouseProcess(tmp_path / "data", free_port()).wait_until_ready()
    try:
        assert second.client().query("SELECT x FROM kept ORDER BY x").result_rows == [
            (1,),
            (2,),
            (3,),
        ]
    finally:
        assert second.stop()[0] == 0


def test_second_process_on_the_same_data_path_exits_with_a_clear_message(
    warehouse: WarehouseProcess,
) -> None:
    intruder = WarehouseProcess(warehouse.data_path, free_port())
    _, stderr = intruder.process.communicate(timeout=30)

    assert intruder.process.returncode != 0
    lines = stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "in use by another process" in lines[0]
        and str(warehouse.data_path) in lines[0]
    )


def test_taken_port_exits_with_a_clear_message(warehouse: WarehouseProcess, tmp_path: Path) -> None:
    intruder = WarehouseProcess(tmp_path / "other", warehouse.port)
    _, stderr = intruder.process.communicate(timeout=30)

    assert intruder.process.returncode != 0
    assert (
        stderr.strip()
        == f"warehouse: cannot listen on {HOST}:{warehouse.port}: address already in use"
    )


def test_measure_insert_throughput(warehouse: WarehouseProcess, tmp_path: Path) -> None:
    """Prints figures for the report; asserts only that every row arrived."""
    rows = event_rows(ROWS)
    for compress in (False, "lz4"):
        client = warehouse.client(compress=compress)
        table = f"throughput_{str(compress).lower()}"
        client.command(EVENTS_DDL.format(table=table))
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            client.insert(table, rows, column_names=COLUMNS)
            seconds.append(time.perf_counter() - started)
        assert client.command(f"SELECT count() FROM {table}") == 3 * ROWS
        rate = ROWS / sorted(seconds)[1]
        print(f"\nclickhouse-connect insert (compress={compress}): {rate:,.0f} rows/s")

    # chDB directly, in a process of its own (a process may open one data path):
    # the same rows as Native bytes into a streaming insert, the engine's ceiling.
    script = f"""
import time, chdb
conn = chdb.connect({str(tmp_path / "direct")!r})
conn.query({EVENTS_DDL.format(table="direct")!r})
native = conn.query("SELECT number AS id, "
    "toDateTime64('2024-01-01', 3, 'UTC') + number * 0.037 AS ts, "
    "['view','cart','buy'][number % 3 + 1] AS kind, number / 7 AS score, "
    "if(number % 5 = 0, NULL, concat('note-', toString(number))) AS note, "
    "if(number % 4 = 0, NULL, toInt64(number) - 50000) AS qty, "
    "arrayMap(j -> concat('t', toString(j)), range(number % 4)) AS tags, "
    "concat('body-', toString(number)) AS body FROM numbers({ROWS}) FORMAT Native").bytes()
seconds = []
for _ in range(3):
    started = time.perf_counter()
    with conn.send_insert("INSERT INTO direct", "Native") as inserter:
        inserter.append(native)
        inserter.finish()
    seconds.append(time.perf_counter() - started)
print(f"{{{ROWS} / sorted(seconds)[1]:,.0f}}")
"""
    direct = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert direct.returncode == 0, direct.stderr
    print(f"chDB direct streaming insert of Native bytes: {direct.stdout.strip()} rows/s")
