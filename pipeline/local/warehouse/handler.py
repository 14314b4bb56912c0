"""ClickHouse's HTTP interface over the engine, as clickhouse-connect uses it.

A request is: the statement (URL ``query`` and/or the body, joined by a line
break), bound parameters (``param_<name>``), settings (any other URL argument),
``database``, ``session_id``; an INSERT's rows follow its statement in the body.
Answers carry the ``X-ClickHouse-*`` headers clients read, and errors the
``Code: N. DB::Exception: ...`` body with ``X-ClickHouse-Exception-Code``.
"""

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from urllib.parse import parse_qsl, urlsplit

from pipeline.local.warehouse import content_coding, statement
from pipeline.local.warehouse.engine import Engine, EngineError, Outcome, clickhouse_error

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 300  # keep-alive: clickhouse-connect pools connections
# An INSERT's statement is small: past this many bytes, read the whole request first.
_MAX_STATEMENT_BYTES = 1 << 20
_DEFAULT_FORMAT = "TabSeparated"

# URL arguments the HTTP layer itself consumes.
_TRANSPORT_ARGUMENTS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "user",
        "password",
        "quota_key",
        "buffer_size",
        "wait_end_of_query",
        "stacktrace",
        "role",
        "client_protocol_version",
        "compress",
        "decompress",
    }
)
# Settings that only steer a server's HTTP layer, which chDB does not have.
_HTTP_ONLY_SETTINGS = frozenset(
    {
        "enable_http_compression",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_zlib_compression_level",
        "http_response_buffer_size",
        "http_wait_end_of_query",
        "add_http_cors_header",
    }
)

# ClickHouse's exceptionCodeToHTTPStatus, by error name.
_STATUS_BY_ERROR = {
    **dict.fromkeys(["REQUIRED_PASSWORD"], 401),
    **dict.fromkeys(
        [
            "UNKNOWN_USER",
            "WRONG_PASSWORD",
            "AUTHENTICATION_FAILED",
            "SET_NON_GRANTED_ROLE",
            "ACCESS_DENIED",
        ],
        403,
    ),
    **dict.fromkeys(
        [
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ],
        400,
    ),
    **dict.fromkeys(
        [
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ],
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "CANNOT_SCHEDULE_TASK": 503,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}


def _content_type(output_format: str) -> str:
    name = output_format.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith(("pretty", "vertical", "markdown", "values", "xml", "template")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


def read_statement(
    prefix: bytes, chunks: Iterator[bytes]
) -> tuple[bytearray, statement.InlineInsert | None]:
    """Read the request until its statement is known.

    An INSERT with inline data is read up to its data, which stays in `chunks`
    (and past the returned offset in the buffer); anything else is read whole.
    """
    buf = bytearray(prefix)
    while True:
        try:
            insert = statement.find_inline_insert(buf, complete=False)
        except statement.Incomplete:
            chunk = next(chunks, None) if len(buf) <= _MAX_STATEMENT_BYTES else None
            if chunk is not None:
                buf += chunk
                continue
            insert = None
        if insert is not None:
            return buf, insert
        for chunk in chunks:
            buf += chunk
        return buf, statement.find_inline_insert(buf, complete=True)


def _parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data body (clickhouse-connect sends long parameters so)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        if part.get_filename() is not None:
            raise clickhouse_error(
                48, "NOT_IMPLEMENTED", "External data is not supported by the local warehouse"
            )
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = payload.decode()
    return fields


class WarehouseHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    engine: Engine
    display_name = "intentflow-local-warehouse"


class WarehouseRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "ClickHouse-chDB"
    timeout = IDLE_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle the body waits for a delayed ACK (40 ms).
    disable_nagle_algorithm = True
    server: WarehouseHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        args = dict(parse_qsl(url.query, keep_blank_values=True))
        body = self._request_body()
        try:
            if url.path == "/ping" or (
                url.path == "/" and self.command == "GET" and "query" not in args
            ):
                self._drain(body)
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            if url.path != "/":
                self._drain(body)
                text = f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n"
                self._reply(404, text.encode(), {"Content-Type": "text/plain; charset=UTF-8"})
                return
            self._answer_query(args, body)
        except EngineError as exc:
            self._drain(body)
            self._reply_error(exc)
        except content_coding.BadRequestBody as exc:
            self.close_connection = True
            self._reply_error(clickhouse_error(33, "CANNOT_READ_ALL_DATA", str(exc)))
        except Exception as exc:
            # A bug here, not a ClickHouse error: answer as the server does for
            # std::exception, and drop the connection since the body's state is unknown.
            log.exception("request failed")
            self.close_connection = True
            self._reply_error(
                clickhouse_error(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}")
            )

    def _request_body(self) -> Iterator[bytes]:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        raw = content_coding.read_body(self.rfile, self.headers.get("Content-Length"), chunked)
        return content_coding.decode(raw, self.headers.get("Content-Encoding"))

    def _drain(self, body: Iterator[bytes]) -> None:
        try:
            for _ in body:
                pass
        except content_coding.BadRequestBody:
            self.close_connection = True

    def _answer_query(self, args: dict[str, str], body: Iterator[bytes]) -> None:
        self._authenticate(args)
        if args.get("compress", "0") not in ("0", "false") or args.get("decompress", "0") not in (
            "0",
            "false",
        ):
            raise clickhouse_error(
                48, "NOT_IMPLEMENTED", "ClickHouse's native block compression is not supported here"
            )
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            args = {**args, **_parse_form(content_type, b"".join(body))}
            body = iter(())
        query_id = args.get("query_id") or str(uuid.uuid4())
        bound = {
            name[len("param_") :]: value
            for name, value in args.items()
            if name.startswith("param_")
        }
        settings = {
            name: value
            for name, value in args.items()
            if name not in _TRANSPORT_ARGUMENTS
            and name not in _HTTP_ONLY_SETTINGS
            and not name.startswith("param_")
        }
        database = self.headers.get("X-ClickHouse-Database") or args.get("database") or None
        default_format = (
            args.get("default_format") or self.headers.get("X-ClickHouse-Format") or _DEFAULT_FORMAT
        )
        session_id = args.get("session_id") or None
        try:
            session_timeout = (
                float(args["session_timeout"]) if args.get("session_timeout") else None
            )
        except ValueError:
            raise clickhouse_error(
                374, "INVALID_SESSION_TIMEOUT", "Invalid session timeout"
            ) from None
        session_check = args.get("session_check", "0") in ("1", "true")

        query = args.get("query", "")
        prefix = (query + "\n").encode() if query else b""
        with self.server.engine.lease(session_id, session_timeout, session_check) as handle:
            sql, insert = read_statement(prefix, body)
            if insert is not None:
                log.debug(
                    "insert %s: %s FORMAT %s", query_id, insert.statement[:200], insert.input_format
                )
                rows = chain([bytes(memoryview(sql)[insert.data_offset :])], body)
                outcome = handle.insert(
                    insert.statement,
                    insert.input_format,
                    rows,
                    settings=settings,
                    database=database,
                )
                output_format = None
            else:
                if not statement.first_keyword(sql):
                    raise clickhouse_error(62, "SYNTAX_ERROR", "Empty query")
                log.debug(
                    "query %s: %s params=%s settings=%s",
                    query_id,
                    bytes(sql[:300]),
                    bound,
                    settings,
                )
                outcome = handle.query(
                    bytes(sql),
                    default_format=default_format,
                    params=bound,
                    settings=settings,
                    database=database,
                )
                output_format = (
                    (statement.output_format(sql) or default_format)
                    if statement.produces_result_set(sql)
                    else None
                )
        self._reply_outcome(outcome, output_format, query_id, args, settings)

    def _authenticate(self, args: dict[str, str]) -> None:
        user, password = "default", ""
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        user = self.headers.get("X-ClickHouse-User") or args.get("user") or user
        password = self.headers.get("X-ClickHouse-Key") or args.get("password") or password
        # The local warehouse has ClickHouse's out-of-the-box user only.
        if user != "default" or password:
            raise clickhouse_error(
                516,
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, "
                "or there is no user with such name",
            )

    def _reply_outcome(
        self,
        outcome: Outcome,
        output_format: str | None,
        query_id: str,
        args: dict[str, str],
        settings: dict[str, str],
    ) -> None:
        headers = {
            "Content-Type": _content_type(output_format)
            if output_format
            else "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": settings.get("session_timezone")
            or self.server.engine.timezone,
            "X-ClickHouse-Summary": json.dumps(outcome.summary, separators=(",", ":")),
        }
        if output_format:
            headers["X-ClickHouse-Format"] = output_format
        body: bytes | memoryview = outcome.body
        coding = None
        if args.get("enable_http_compression", "0") in ("1", "true"):
            coding = content_coding.choose_response_coding(self.headers.get("Accept-Encoding"))
        if coding and memoryview(body).nbytes:
            body = content_coding.encode(body, coding)
            headers["Content-Encoding"] = coding
        self._reply(200, body, headers)

    def _reply_error(self, exc: EngineError) -> None:
        status = _STATUS_BY_ERROR.get(self.server.engine.error_names.get(exc.code, ""), 500)
        message = (
            exc.message
            if "(version " in exc.message
            else f"{exc.message} (version {self.server.engine.version})"
        )
        log.debug("error %s: %s", status, message)
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(exc.code),
        }
        self._reply(status, (message + "\n").encode(), headers)

    def _reply(self, status: int, body: bytes | memoryview, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("X-ClickHouse-Server-Display-Name", self.server.display_name)
        self.send_header("Keep-Alive", f"timeout={IDLE_TIMEOUT_S}")
        self.send_header("Content-Length", str(memoryview(body).nbytes))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
