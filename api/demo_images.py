"""The demo shop's pictures: small PNGs drawn here, one per product and a logo.

Messages carry a product's image (WhatsApp's header image must be a JPEG or PNG,
so no SVG); the demo shop has no photographs, so each product gets a flat picture
in its category's colour with a framed square, and the shop a logo. Deterministic
and cached: the same product always gets the same bytes.
"""

import functools
import hashlib
import struct
import zlib

SIZE = 192
CATEGORY_COLOURS = {
    "cameras": (46, 64, 87),
    "headphones": (120, 54, 92),
    "laptops": (38, 102, 94),
    "phones": (164, 84, 36),
    "watches": (84, 96, 40),
}
LOGO_COLOUR = (25, 25, 112)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _png(background: tuple[int, int, int], accent: tuple[int, int, int]) -> bytes:
    margin = SIZE // 4
    plain = bytes(background) * SIZE
    framed = bytes(background) * margin + bytes(accent) * (SIZE - 2 * margin)
    framed += bytes(background) * margin
    rows = b"".join(
        b"\x00" + (framed if margin <= y < SIZE - margin else plain) for y in range(SIZE)
    )
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


@functools.cache
def product_png(product_id: str, category: str) -> bytes:
    background = CATEGORY_COLOURS.get(category, (90, 90, 90))
    shade = hashlib.sha256(product_id.encode()).digest()
    accent = tuple(min(255, c + 60 + shade[i] % 60) for i, c in enumerate(background))
    return _png(background, accent)  # type: ignore[arg-type]


@functools.cache
def logo_png() -> bytes:
    return _png(LOGO_COLOUR, (240, 240, 250))
