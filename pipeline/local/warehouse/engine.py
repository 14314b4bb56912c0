"""The ClickHouse engine from chDB, owned by this process for one data path.

chDB lets a process open one data path, with any number of independent
connections on it; connections are cheap (~0.1 ms) and run queries in parallel
with the GIL released. So a request without a session gets a connection of
its own, and each HTTP session (``session_id``) keeps one connection, which
carries its ``SET``/``USE`` state and temporary tables as a server session does.
"""

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import chdb

from pipeline.local.warehouse import statement

log = logging.getLogger(__name__)

DEFAULT_SESSION_TIMEOUT_S = 60.0  # ClickHouse's default_session_timeout
MAX_SESSION_TIMEOUT_S = 3600.0  # ClickHouse's max_session_timeout
_CODE_RE = re.compile(r"Code: (\d+)\.")
_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHUTDOWN_WAIT_S = 30.0
# Errors a table raises while rows are written into it (after the input is parsed):
# too many partitions in one block, a CHECK constraint. chDB's streaming insert
# (send_insert) swallows them: it reports the rows written and stores none.
_WRITE_PATH_ERRORS = (
    "TOO_MANY_PARTS",
    "VIOLATED_CONSTRAINT",
    "TOO_MANY_PARTITIONS",
    "DUPLICATE_DATA_PART",
)
_WRITE_PATH_ERROR_COUNTS = (
    "SELECT code, name, value, last_error_message FROM system.errors WHERE name IN ({names})"
).format(names=", ".join(f"'{name}'" for name in _WRITE_PATH_ERRORS))


class EngineError(Exception):
    """A ClickHouse exception: its code and its message as the server words it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def clickhouse_error(code: int, name: str, text: str) -> EngineError:
    return EngineError(code, f"Code: {code}. DB::Exception: {text}. ({name})")


class DataPathInUse(Exception):
    """Another process holds the data path."""


def engine_error(exc: Exception) -> EngineError:
    """Turn a chDB exception into the ClickHouse exception it carries."""
    text = str(exc)
    start = text.find("Code: ")
    message = text[start:].strip() if start >= 0 else text.strip()
    match = _CODE_RE.match(message)
    if match:
        return EngineError(int(match.group(1)), message)
    # Not from the engine: ClickHouse reports std::exception as STD_EXCEPTION.
    return clickhouse_error(1001, "STD_EXCEPTION", message)


def _quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class Outcome:
    """What a statement returned: the body in its output format and statistics."""

    body: bytes | memoryview
    summary: dict[str, str]
    # Holds chDB's result buffer alive while `body` (a view into it) is sent.
    _result: Any = field(default=None, repr=False)


class Handle:
    """One chDB connection as requests see it.

    On a ClickHouse server, URL settings and `database` apply to one query while
    SET and USE statements change the session. Clients send the same settings
    with every request, so they stay applied between requests and only changes
    cost SET statements; the session's own values are put back when a request
    stops sending a setting, and before a SET statement runs.
    """

    def __init__(self, conn: Any, write_lock: "threading.Lock | None" = None) -> None:
        self._conn = conn
        # Held around every write, so a write-path error counted in system.errors
        # while it is held belongs to that write (see insert()).
        self._write_lock = write_lock or threading.Lock()
        self._session_database = "default"  # moved by USE statements
        self._connection_database = "default"
        self._url_settings: dict[str, str] = {}  # in force on the connection
        self._session_values: dict[str, tuple[str, bool]] = {}  # (value, changed) to restore

    def query(
        self,
        sql: bytes,
        *,
        default_format: str,
        params: Mapping[str, str],
        settings: Mapping[str, str],
        database: str | None,
    ) -> Outcome:
        keyword = statement.first_keyword(sql)
        if keyword == "SET":
            self._apply_settings({})
        else:
            self._apply_settings(settings)
        self._use(database or self._session_database)
        if keyword == "INSERT":
            # Its write-path errors must not be taken for a concurrent streamed insert's.
            with self._write_lock:
                result = self._run(sql, default_format, params)
        else:
            result = self._run(sql, default_format, params)
        if keyword == "USE":
            current = self._run("SELECT currentDatabase()", "TabSeparated").bytes().decode().strip()
            self._session_database = self._connection_database = current
        if keyword == "SET":
            self._session_values.clear()
        summary = {
            "read_rows": str(result.storage_rows_read()),
            "read_bytes": str(result.storage_bytes_read()),
            "written_rows": str(result.rows_written()),
            "written_bytes": str(result.bytes_written()),
            "result_rows": str(result.rows_read()),
            "result_bytes": str(result.bytes_read()),
            "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }
        return Outcome(result.get_memview().view(), summary, result)

    def insert(
        self,
        insert_statement: bytes,
        input_format: str,
        data: Iterator[bytes],
        *,
        settings: Mapping[str, str],
        database: str | None,
    ) -> Outcome:
        """Stream `data` into chDB as the rows of an INSERT without its data clause."""
        self._apply_settings(settings)
        self._use(database or self._session_database)
        with self._write_lock:
            before = self._write_path_errors()
            written = self._stream_insert(insert_statement, input_format, data)
            refused = self._write_path_errors()
        for code, (count, name, message) in refused.items():
            if count > before.get(code, (0, "", ""))[0]:
                # The engine refused the rows after reading them: answer its error, as
                # ClickHouse does, never "written" for rows that were not stored.
                raise clickhouse_error(code, name, message.rstrip(". "))
        summary = {
            "read_rows": "0",
            "read_bytes": "0",
            "written_rows": str(written.rows_written),
            "written_bytes": str(written.bytes_written),
            "result_rows": "0",
            "result_bytes": "0",
            "elapsed_ns": str(int(written.elapsed * 1e9)),
        }
        return Outcome(b"", summary)

    def _stream_insert(self, insert_statement: bytes, input_format: str, data: Iterator[bytes]):
        try:
            inserter = self._conn.send_insert(insert_statement.decode(), input_format)
        except Exception as exc:
            raise engine_error(exc) from None
        with inserter:  # cancels the insert unless finished
            try:
                for chunk in data:
                    if chunk:
                        inserter.append(chunk)
                return inserter.finish()
            except (RuntimeError, chdb.ChdbError) as exc:
                raise engine_error(exc) from None

    def _write_path_errors(self) -> dict[int, tuple[int, str, str]]:
        """code → (times raised in this process, name, last message) of write-path errors."""
        rows = self._run(_WRITE_PATH_ERROR_COUNTS, "JSONCompactEachRow").bytes()
        found = {}
        for line in rows.splitlines():
            code, name, count, message = json.loads(line)
            found[int(code)] = (int(count), name, message)
        return found

    def close(self) -> None:
        self._conn.close()

    def _run(self, sql: str | bytes, fmt: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            return self._conn.query(sql, fmt, params=dict(params or {}))
        except Exception as exc:
            raise engine_error(exc) from None

    def _use(self, database: str) -> None:
        if database != self._connection_database:
            self._run(f"USE {_quote_identifier(database)}", "TabSeparated")
            self._connection_database = database

    def _apply_settings(self, settings: Mapping[str, str]) -> None:
        for name in settings:
            if not _SETTING_NAME_RE.match(name):
                raise clickhouse_error(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
        for name in [name for name in self._url_settings if name not in settings]:
            value, changed = self._session_values.get(name, ("", False))
            self._run(
                f"SET {name} = {_quote_string(value) if changed else 'DEFAULT'}", "TabSeparated"
            )
            del self._url_settings[name]
        changed_settings = {n: v for n, v in settings.items() if self._url_settings.get(n) != v}
        if not changed_settings:
            return
        unknown = [name for name in changed_settings if name not in self._session_values]
        if unknown:
            names = ", ".join(_quote_string(name) for name in unknown)
            rows = self._run(
                f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})",
                "JSONEachRow",
            )
            for line in rows.bytes().splitlines():
                row = json.loads(line)
                self._session_values[row["name"]] = (row["value"], bool(row["changed"]))
        for name, value in changed_settings.items():
            # Forget it first: if SET fails, the old value may or may not be in force.
            self._url_settings.pop(name, None)
            self._run(f"SET {name} = {_quote_string(value)}", "TabSeparated")
            self._url_settings[name] = value


@dataclass
class _Session:
    handle: Handle
    timeout_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)


def _check_data_path_free(data_path: str) -> None:
    """Fail before chDB does: chDB reports a held data path only on stderr, vaguely.

    ClickHouse holds `<path>/status` with flock() while it runs.
    """
    status = os.path.join(data_path, "status")
    if not os.path.exists(status):
        return
    with open(status, "rb") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataPathInUse(f"data path {data_path} is in use by another process") from None
        fcntl.flock(probe, fcntl.LOCK_UN)


class Engine:
    """Owns the data path; lends connections to requests."""

    def __init__(self, data_path: str) -> None:
        self._data_path = data_path
        _check_data_path_free(data_path)
        try:
            # This first connection holds the data path until close().
            self._root = chdb.connect(data_path)
        except Exception as exc:
            if "Cannot lock file" in str(exc):
                raise DataPathInUse(f"data path {data_path} is in use by another process") from None
            raise
        version, timezone = (
            self._root.query("SELECT version(), timezone()", "TabSeparated")
            .bytes()
            .decode()
            .split()
        )
        self.version = version
        self.timezone = timezone
        names = self._root.query(
            "SELECT number, errorCodeToName(number) AS name FROM numbers(2000) WHERE name != ''",
            "TabSeparated",
        )
        self.error_names = {
            int(code): name
            for code, name in (line.split("\t") for line in names.bytes().decode().splitlines())
        }
        self._sessions: dict[str, _Session] = {}
        # Writes run one at a time: see Handle.insert.
        self._write_lock = threading.Lock()
        self._lock = threading.Condition()
        self._active = 0
        self._closing = False
        self._last_expiry = time.monotonic()

    @contextmanager
    def lease(
        self,
        session_id: str | None,
        session_timeout_s: float | None = None,
        session_check: bool = False,
    ) -> Iterator[Handle]:
        """A connection for one request: the session's, or a fresh one."""
        with self._lock:
            if self._closing:
                raise clickhouse_error(210, "NETWORK_ERROR", "The warehouse is shutting down")
            self._expire_idle_sessions()
            self._active += 1
        try:
            if session_id:
                session = self._session(session_id, session_timeout_s, session_check)
                try:
                    yield session.handle
                finally:
                    session.last_used = time.monotonic()
                    session.lock.release()
            else:
                handle = Handle(self._connect(), self._write_lock)
                try:
                    yield handle
                finally:
                    handle.close()
        finally:
            with self._lock:
                self._active -= 1
                self._lock.notify_all()

    def _session(self, session_id: str, timeout_s: float | None, check: bool) -> _Session:
        timeout = DEFAULT_SESSION_TIMEOUT_S if timeout_s is None else timeout_s
        if not 0 < timeout <= MAX_SESSION_TIMEOUT_S:
            raise clickhouse_error(
                374,
                "INVALID_SESSION_TIMEOUT",
                f"Session timeout {timeout:g} is not in (0, {MAX_SESSION_TIMEOUT_S:g}]",
            )
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                if check:
                    raise clickhouse_error(
                        372, "SESSION_NOT_FOUND", f"Session {session_id} not found"
                    )
                session = _Session(Handle(self._connect(), self._write_lock), timeout)
                self._sessions[session_id] = session
            session.timeout_s = timeout
            if not session.lock.acquire(blocking=False):
                raise clickhouse_error(
                    373,
                    "SESSION_IS_LOCKED",
                    f"Session {session_id} is locked by a concurrent client",
                )
            return session

    def _connect(self) -> Any:
        try:
            return chdb.connect(self._data_path)
        except Exception as exc:
            raise engine_error(exc) from None

    def _expire_idle_sessions(self) -> None:
        """Close sessions idle past their timeout (caller holds the lock)."""
        now = time.monotonic()
        if now - self._last_expiry < 1.0:
            return
        self._last_expiry = now
        for session_id, session in list(self._sessions.items()):
            if now - session.last_used > session.timeout_s and session.lock.acquire(blocking=False):
                del self._sessions[session_id]
                session.handle.close()
                log.debug("session %s expired", session_id)

    def close(self) -> None:
        """Refuse new requests, let running ones finish, then release the data path."""
        with self._lock:
            self._closing = True
            deadline = time.monotonic() + _SHUTDOWN_WAIT_S
            while self._active and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            if self._active:
                log.warning("closing chDB with %d requests still running", self._active)
            for session in self._sessions.values():
                session.handle.close()
            self._sessions.clear()
            self._root.close()
