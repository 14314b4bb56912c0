"""``GET /v1/r/{token}``: a shopper follows a message's link; we count the click and send
them on to the storefront.

The token (``schemas.links``) is signed with ``link_secret``: a forged, altered or
garbled one gets a plain 404 page and nothing is recorded, so only links we sent
are counted and the redirect never leads anywhere a token does not name. A valid
one publishes a ``clicked`` ``Receipt`` on ``receipts`` (keyed by ``user_key``, like
every receipt; nothing else about the shopper) and answers 302 to the landing
page with ``utm_source/utm_medium/utm_campaign/utm_message_id``, which an order
placed from there carries back (attribution, api/queries/attribution.py).

Counting: the receipt id hashes message, channel, "clicked" and "link", so every
click of one message on one channel is the same receipt: the message counts as
clicked once per channel. The first click is the one published: a process
remembers the receipts it already published (bounded) and does not publish them
again; clicks reaching different API processes collapse in the warehouse (one
receipt id, ReplacingMergeTree).

Link previews are not clicks: messaging apps fetch a link to draw its preview
(iMessage announces itself as facebookexternalhit and Twitterbot, WhatsApp as
WhatsApp/…), often as soon as the message arrives. Such a request, and a HEAD, is
redirected like any other but records nothing.

Broker down: the shopper must land, so the redirect never waits long and never
fails for it (a 503 with Retry-After means nothing to a person). It waits at most
``CLICK_PUBLISH_TIMEOUT_S`` for the broker's acknowledgement, then redirects
anyway; a publish that fails (then or later) queues the click in this process,
re-published in the background until the broker takes it (same receipt id: a
publish that did land after all collapses). Each queued and each recovered click is logged with its
message id; a click that could not be kept (queue full, older than
``CLICK_MAX_AGE_S``, or the process stopping) is logged as an error and counted
in ``ClickBacklog.lost``: never silently lost, though not guaranteed.
"""

import asyncio
import logging
import re
import time
from collections import OrderedDict
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ResourcesDep, SettingsDep
from api.producer import BrokerUnavailable, EventProducer
from api.routing import GuardedRoute
from schemas.links import TRACKED_LINK, Link, LinkError, landing_url, open_link_token
from schemas.messages import Receipt
from schemas.receipt_ids import receipt_id
from schemas.topics import RECEIPTS

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["links"], route_class=GuardedRoute)

CLICK_PUBLISH_TIMEOUT_S = 1.0
CLICK_MAX_AGE_S = 900.0
BACKLOG_MAX = 10_000
REMEMBERED_MAX = 100_000

NOT_FOUND_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Link not found</title>"
    "<h1>This link is not valid</h1><p>It may have been copied incompletely.</p></html>"
)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# User agents of link-preview fetchers (messaging apps, social networks), lower case.
PREVIEW_AGENTS = re.compile(
    r"facebookexternalhit|facebot|twitterbot|whatsapp/|telegrambot|slackbot|discordbot|"
    r"linkedinbot|skypeuripreview|googlebot|bingbot|applebot|embedly|preview"
)


def is_preview(request: Request) -> bool:
    """A fetch to draw the link's preview, not a shopper following it."""
    agent = request.headers.get("user-agent", "").lower()
    return request.method == "HEAD" or bool(PREVIEW_AGENTS.search(agent))


def click_receipt(link: Link, at: datetime) -> Receipt:
    return Receipt(
        receipt_id=receipt_id(link.message_id, link.channel, "clicked", "link"),
        message_id=link.message_id,
        kind=link.kind,  # type: ignore[arg-type]
        user_key=link.user_key,
        channel=link.channel,  # type: ignore[arg-type]
        status="clicked",
        at=at,
        detail=TRACKED_LINK,
    )


class ClickBacklog:
    """Clicks the broker has not acknowledged yet, re-published in the background."""

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer
        self._queue: OrderedDict[str, tuple[float, Receipt]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self.published: OrderedDict[str, None] = OrderedDict()
        self.recovered = self.lost = 0

    def remember(self, receipt: Receipt) -> None:
        self.published[receipt.receipt_id] = None
        self.published.move_to_end(receipt.receipt_id)
        while len(self.published) > REMEMBERED_MAX:
            self.published.popitem(last=False)

    def forget(self, receipt: Receipt) -> None:
        self.published.pop(receipt.receipt_id, None)

    def seen(self, receipt: Receipt) -> bool:
        return receipt.receipt_id in self.published or receipt.receipt_id in self._queue

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, receipt: Receipt) -> None:
        if len(self._queue) >= BACKLOG_MAX:
            self._lose(receipt, "the backlog of unrecorded clicks is full")
            return
        self._queue[receipt.receipt_id] = (time.monotonic(), receipt)
        log.warning("click on message %s not recorded yet: queued for retry", receipt.message_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())

    def _lose(self, receipt: Receipt, why: str) -> None:
        self.lost += 1
        log.error(
            "click on message %s lost: %s (lost so far: %d)", receipt.message_id, why, self.lost
        )

    async def _drain(self) -> None:
        delay = 0.5
        try:
            while self._queue:
                await asyncio.sleep(delay)
                now = time.monotonic()
                for key, (queued_at, receipt) in list(self._queue.items()):
                    if now - queued_at > CLICK_MAX_AGE_S:
                        del self._queue[key]
                        self._lose(receipt, f"the broker did not take it in {CLICK_MAX_AGE_S:g} s")
                batch = [r for _, r in self._queue.values()]
                if not batch:
                    return
                try:
                    await self._producer.publish(
                        RECEIPTS.name, [(r.user_key.encode(), r.to_json()) for r in batch]
                    )
                except BrokerUnavailable:
                    delay = min(delay * 2, 30.0)
                    continue
                for receipt in batch:
                    self._queue.pop(receipt.receipt_id, None)
                    self.remember(receipt)
                    self.recovered += 1
                log.warning("%d queued clicks recorded after a broker outage", len(batch))
                delay = 0.5
        except asyncio.CancelledError:
            for _, receipt in self._queue.values():
                self._lose(receipt, "the API stopped before the broker took it")
            self._queue.clear()
            raise


def backlog_of(request: Request, producer: EventProducer) -> ClickBacklog:
    backlog = getattr(request.app.state, "click_backlog", None)
    if backlog is None:
        backlog = request.app.state.click_backlog = ClickBacklog(producer)
    return backlog


def _settled(backlog: ClickBacklog, receipt: Receipt, done: asyncio.Future) -> None:
    if done.cancelled() or done.exception() is not None:
        backlog.forget(receipt)
        backlog.add(receipt)


@router.get(
    "/r/{token}",
    summary="Follow a message's tracked link: count the click, redirect to the storefront",
    response_class=RedirectResponse,
    status_code=302,
    responses={
        302: {"description": "To the storefront page the link names, with UTM tags."},
        404: {"description": "Not a link we made (forged, altered or garbled)."},
    },
)
async def follow_link(
    # Not bounded here: a 422 means nothing to a shopper; any bad token is the 404 page.
    token: str,
    request: Request,
    settings: SettingsDep,
    resources: ResourcesDep,
) -> Response:
    try:
        link = open_link_token(settings.link_secret.get_secret_value(), token)
    except LinkError:
        return HTMLResponse(NOT_FOUND_PAGE, 404, headers=NO_STORE)
    receipt = click_receipt(link, datetime.now(UTC))
    backlog = backlog_of(request, resources.events)
    if not is_preview(request) and not backlog.seen(receipt):
        backlog.remember(receipt)  # a second click while this one is in flight adds nothing
        # Not cancelled when slow (a producer cancelled while it starts would leak): it is
        # left to finish, and a failure is queued for retry whenever it comes.
        publishing = asyncio.ensure_future(
            resources.events.publish(
                RECEIPTS.name, [(receipt.user_key.encode(), receipt.to_json())]
            )
        )
        publishing.add_done_callback(lambda done: _settled(backlog, receipt, done))
        await asyncio.wait([publishing], timeout=CLICK_PUBLISH_TIMEOUT_S)
    return RedirectResponse(landing_url(settings.storefront_url, link), 302, headers=NO_STORE)
