"""Just enough SQL lexing to route a request the way ClickHouse's HTTP handler does.

ClickHouse reads an INSERT's inline data from the same stream as the statement:
the data starts after ``VALUES`` or after ``FORMAT <name>`` and its line break.
chDB's streaming insert wants the statement and the data apart, so the statement
is found here by skipping comments, literals and parenthesised lists; everything
else is left to the engine's own parser.
"""

from dataclasses import dataclass

_SPACE = b" \t\n\r\f\v"
_WORD_START = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_WORD_BODY = _WORD_START | frozenset(b"0123456789$")
# Statements whose answer is a result set: ClickHouse names its format in a header.
_RESULT_KEYWORDS = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK", "VALUES", "("}
)


class Incomplete(Exception):
    """The bytes end before the statement can be classified."""


@dataclass(frozen=True)
class InlineInsert:
    """An INSERT whose data follows the statement in the request."""

    statement: bytes  # without VALUES / FORMAT <name>
    input_format: str
    data_offset: int


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: bytes  # upper-cased for words; the raw character otherwise


def _tokens(buf: bytes, pos: int = 0):
    """Yield significant tokens; raise Incomplete where a token runs past the end."""
    n = len(buf)
    while pos < n:
        c = buf[pos]
        if c in _SPACE:
            pos += 1
        elif buf.startswith(b"--", pos) or c == ord("#"):
            end = buf.find(b"\n", pos)
            if end < 0:
                raise Incomplete
            pos = end + 1
        elif buf.startswith(b"/*", pos):
            end = buf.find(b"*/", pos + 2)
            if end < 0:
                raise Incomplete
            pos = end + 2
        elif c in b"'\"`":
            end = _quoted_end(buf, pos)
            yield _Token(pos, end, bytes([c]))
            pos = end
        elif c in _WORD_START:
            end = pos + 1
            while end < n and buf[end] in _WORD_BODY:
                end += 1
            if end == n:
                raise Incomplete  # the word may continue in bytes not read yet
            yield _Token(pos, end, buf[pos:end].upper())
            pos = end
        else:
            yield _Token(pos, pos + 1, bytes([c]))
            pos += 1


def _quoted_end(buf: bytes, start: int) -> int:
    quote = buf[start]
    pos = start + 1
    while True:
        end = buf.find(bytes([quote]), pos)
        if end < 0:
            raise Incomplete
        backslashes = 0
        while buf[end - 1 - backslashes] == ord("\\"):
            backslashes += 1
        if backslashes % 2:
            pos = end + 1
        elif buf[end + 1 : end + 2] == bytes([quote]):
            pos = end + 2  # a doubled quote stands for itself
        elif end + 1 == len(buf):
            raise Incomplete
        else:
            return end + 1


def first_keyword(sql: bytes) -> str:
    """The statement's first keyword, upper-cased ('' when there is none)."""
    try:
        for token in _tokens(sql + b"\n"):
            return token.text.decode("latin-1")
    except Incomplete:
        pass
    return ""


def produces_result_set(sql: bytes) -> bool:
    return first_keyword(sql) in _RESULT_KEYWORDS


def find_inline_insert(buf: bytes, *, complete: bool) -> InlineInsert | None:
    """Split an INSERT with inline data; None when `buf` holds no such statement.

    Raises Incomplete when more bytes are needed to decide and `complete` is false.
    """
    try:
        return _find_inline_insert(buf if not complete else buf + b"\n")
    except Incomplete:
        if complete:
            return None
        raise


def _find_inline_insert(buf: bytes) -> InlineInsert | None:
    tokens = _tokens(buf)
    first = next(tokens, None)
    if first is None:
        raise Incomplete
    if first.text != b"INSERT":
        return None
    depth = 0
    for token in tokens:
        if token.text == b"(":
            depth += 1
        elif token.text == b")":
            depth -= 1
        elif depth:
            continue
        elif token.text in (b"SELECT", b"WITH", b"INFILE"):
            return None  # the rows come from a query or a file, not the request
        elif token.text == b"VALUES":
            return InlineInsert(buf[: token.start].rstrip(), "Values", token.end)
        elif token.text == b"FORMAT":
            name = next(tokens, None)
            if name is None:
                raise Incomplete
            return InlineInsert(
                buf[: token.start].rstrip(),
                buf[name.start : name.end].decode("ascii"),
                _data_start(buf, name.end),
            )
    raise Incomplete


def _data_start(buf: bytes, pos: int) -> int:
    # As ClickHouse: data begins after the first line break following the format
    # name, or after the spaces when there is no line break.
    n = len(buf)
    while pos < n and buf[pos] in b" \t\f":
        pos += 1
    if buf.startswith(b"\r\n", pos):
        return pos + 2
    if pos < n and buf[pos] in b"\r\n":
        return pos + 1
    return pos


def output_format(sql: bytes) -> str | None:
    """The format named by a trailing top-level FORMAT clause, if any."""
    try:
        tokens = list(_tokens(sql + b"\n"))
    except Incomplete:
        return None
    depth = 0
    found = None
    for i, token in enumerate(tokens):
        if token.text == b"(":
            depth += 1
        elif token.text == b")":
            depth -= 1
        elif depth == 0 and token.text == b"FORMAT" and i + 1 < len(tokens):
            name = tokens[i + 1]
            after = tokens[i + 2].text if i + 2 < len(tokens) else b";"
            # `SELECT format FROM t` names a column, not an output format.
            if name.text[0] in _WORD_START and after in (b";", b"SETTINGS"):
                found = sql[name.start : name.end].decode("ascii")
    return found
