"""HTTP body framing and content codings as ClickHouse's HTTP interface speaks them.

Requests may be chunked and compressed (``Content-Encoding``); responses are
compressed when the client sends ``enable_http_compression=1`` and an
``Accept-Encoding`` this server can produce.
"""

import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

import lz4.frame

try:
    from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
except ImportError:
    from backports import zstd  # type: ignore[no-redef]

# Fastest first: the server may pick any coding the client accepts.
RESPONSE_CODINGS = ("lz4", "zstd", "gzip", "deflate")
_ZLIB_LEVEL = 3  # ClickHouse's http_zlib_compression_level default
_READ_SIZE = 1 << 20


class BadRequestBody(Exception):
    """The body's framing or coding is broken or unsupported."""


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes) -> bytes: ...


def read_body(rfile: BinaryIO, content_length: str | None, chunked: bool) -> Iterator[bytes]:
    """The request body as it arrives, without its transfer framing."""
    if chunked:
        yield from _read_chunked(rfile)
        return
    remaining = int(content_length or 0)
    while remaining > 0:
        data = rfile.read(min(remaining, _READ_SIZE))
        if not data:
            raise BadRequestBody("request body ended before Content-Length bytes")
        remaining -= len(data)
        yield data


def _read_chunked(rfile: BinaryIO) -> Iterator[bytes]:
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequestBody(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers carry nothing this server uses
            return
        data = rfile.read(size)
        if len(data) != size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise BadRequestBody("chunked request body ended early")
        yield data


def decode(chunks: Iterator[bytes], content_encoding: str | None) -> Iterator[bytes]:
    """Undo a request's Content-Encoding, chunk by chunk."""
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity", "none"):
        return chunks
    factories: dict[str, Callable[[], _Decompressor]] = {
        "lz4": lz4.frame.LZ4FrameDecompressor,
        "zstd": zstd.ZstdDecompressor,
        "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
        "deflate": zlib.decompressobj,
    }
    if coding not in factories:
        raise BadRequestBody(f"unsupported Content-Encoding {coding!r}")
    return _decode_frames(chunks, factories[coding])


def _decode_frames(
    chunks: Iterator[bytes], factory: Callable[[], _Decompressor]
) -> Iterator[bytes]:
    # Clients compress block by block, so a body is a sequence of complete frames.
    decompressor = factory()
    try:
        for chunk in chunks:
            data = chunk
            while data:
                out = decompressor.decompress(data)
                if out:
                    yield out
                if not decompressor.eof:
                    break
                data = decompressor.unused_data
                decompressor = factory()
    except (RuntimeError, zlib.error, zstd.ZstdError) as exc:
        raise BadRequestBody(f"cannot decompress request body: {exc}") from None


def choose_response_coding(accept_encoding: str | None) -> str | None:
    accepted = {
        part.split(";", 1)[0].strip().lower() for part in (accept_encoding or "").split(",")
    }
    return next((coding for coding in RESPONSE_CODINGS if coding in accepted), None)


def encode(body: bytes | memoryview, coding: str) -> bytes:
    """One frame for the whole body: clickhouse-connect reads lz4/zstd as a single frame."""
    if coding == "lz4":
        return lz4.frame.compress(body)
    if coding == "zstd":
        return zstd.compress(body)
    if coding == "gzip":
        compressor = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(body) + compressor.flush()
    if coding == "deflate":
        return zlib.compress(body, _ZLIB_LEVEL)
    raise ValueError(f"unknown coding {coding}")
