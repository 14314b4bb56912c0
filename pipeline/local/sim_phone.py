"""The provider simulator's ``/phone`` page: what the simulated shoppers' phones show.

A harness page, not a provider API (neither Meta nor Twilio lets a sender read a
phone). It lets a person running the demo see a message arrive, as a WhatsApp card
or an SMS, and follow its link as the shopper would: the link is the one the
provider was given (our tracked ``/v1/r/…`` link), so the click is recorded by our
API exactly as a real shopper's is. Phones are shown masked, every value escaped;
the page reloads itself every few seconds (no script).
"""

import html
import string
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from schemas.templates import TEMPLATES

REFRESH_S = 3
STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#e5ddd5;color:#111}
header{background:#075e54;color:#fff;padding:10px 16px}h1{font-size:18px;margin:0}
main{display:flex;flex-wrap:wrap;gap:16px;padding:16px}
.phone{background:#fff;border-radius:18px;padding:12px;width:320px;box-shadow:0 1px 4px #0003}
.phone h2{font-size:15px;margin:0 0 8px}
.message{border-radius:10px;padding:8px;margin:8px 0;background:#dcf8c6}
.message.sms{background:#eceff1}
.message img{max-width:100%;border-radius:8px}
.meta{font-size:12px;color:#555}
.message a.open{display:block;text-align:center;margin-top:6px;padding:6px;border-radius:8px;
background:#fff;color:#075e54;font-weight:600;text-decoration:none;border:1px solid #075e54}
.empty{padding:16px}
"""
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src http: https: data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
e = html.escape


class PhoneMessage(Protocol):
    """What the simulator kept of a message it took (``provider_sim.Accepted``)."""

    channel: str
    kind: str | None
    message_id: str | None
    to_masked: str
    content: dict[str, Any]
    received_at: str
    link: str | None


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def whatsapp_text(message: PhoneMessage, body_names: Mapping[str, tuple[str, ...]]) -> str:
    """The text the shopper reads: a template's approved body with its parameters filled,
    an interactive message's body, or a plain text."""
    content = message.content
    if "template" in content:
        template = TEMPLATES.get(message.kind or "")
        names = body_names.get(content["template"], ())
        # The simulator took the send only with one parameter per approved placeholder.
        values = dict(zip(names, content["body_parameters"], strict=True))
        if template is None:
            return " · ".join(content["body_parameters"])
        return string.Formatter().vformat(template.body, (), _Blank(values))
    return str(content.get("body") or content.get("text") or "")


def _button(message: PhoneMessage) -> str:
    if message.kind in TEMPLATES and message.channel == "whatsapp":
        return TEMPLATES[message.kind].button
    return message.content.get("display_text") or "Open link"


def _message_html(message: PhoneMessage, body_names: Mapping[str, tuple[str, ...]]) -> str:
    image = message.content.get("header_image") if message.channel == "whatsapp" else None
    text = whatsapp_text(message, body_names) if message.channel == "whatsapp" else ""
    if message.channel == "sms":
        text = str(message.content.get("text", ""))
    parts = [
        f'<article class="message {e(message.channel)}" data-channel="{e(message.channel)}"'
        f' data-kind="{e(message.kind or "")}" data-message-id="{e(message.message_id or "")}">',
        f'<div class="meta">{e(message.channel)} · {e(message.kind or "unknown")} · '
        f"{e(message.received_at[:19].replace('T', ' '))} UTC</div>",
    ]
    if image:
        parts.append(f'<img src="{e(image)}" alt="">')
    parts.append(f'<p class="text">{e(text)}</p>')
    if message.link and message.channel == "whatsapp":
        parts.append(f'<a class="open" href="{e(message.link)}">{e(_button(message))}</a>')
    elif message.link:
        parts.append(f'<a class="open" href="{e(message.link)}">Open link</a>')
    parts.append("</article>")
    return "".join(parts)


def phone_page(messages: Iterable[PhoneMessage], body_names: Mapping[str, tuple[str, ...]]) -> str:
    """Every phone that received a message, newest message first on each."""
    by_phone: dict[str, list[PhoneMessage]] = defaultdict(list)
    for message in messages:
        by_phone[message.to_masked].append(message)
    phones = "".join(
        f'<section class="phone" data-phone="{e(masked)}"><h2>{e(masked)}</h2>'
        + "".join(
            _message_html(m, body_names)
            for m in sorted(found, key=lambda m: m.received_at, reverse=True)
        )
        + "</section>"
        for masked, found in by_phone.items()
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        "<title>Shoppers' phones · provider simulator</title>"
        '<link rel="stylesheet" href="/phone.css"></head><body>'
        "<header><h1>Shoppers' phones (provider simulator)</h1></header>"
        f"<main>{phones or '<p class=empty>No message yet.</p>'}</main></body></html>"
    )
