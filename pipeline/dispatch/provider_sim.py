"""A WhatsApp and SMS provider simulator: ``intentflow provider-sim`` (a uvicorn app).

Answers like a real provider: ``POST /v1/{channel}/messages`` takes a message
with an ``Idempotency-Key`` (a repeat returns the first answer and sends
nothing), then posts signed delivery webhooks to ``{webhook_url}/v1/webhooks/
{channel}``: delivered, read, clicked, or failed, at configurable rates and
delays (``POST /v1/config`` changes them at run time). ``GET /v1/messages``
lists what it took, so tests count sends by message id. Phones are kept and
logged masked only.

``POST /v1/{channel}/inbound`` ``{"from": "+1…", "text": "STOP"}`` plays a shopper's
reply: the simulator posts it, signed, to the same webhook in the provider's own
inbound shape (Meta's ``value.messages[]``, Twilio's form ``From``/``Body``;
schemas/inbound.py).
"""

import asyncio
import hashlib
import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import click
import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, Field
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.dispatch.settings import ProviderSimSettings
from pipeline.worker import configure_logging
from schemas import pii
from schemas.inbound import FORM, sms_body, whatsapp_body
from schemas.signatures import signature_headers

log = logging.getLogger("intentflow.provider_sim")

ChannelName = Literal["whatsapp", "sms"]
Rate = Annotated[float, Field(ge=0, le=1)]


@dataclass(frozen=True, slots=True)
class Behaviour:
    fail_rate: float = 0.0  # a "failed" webhook instead of "delivered"
    silent_rate: float = 0.0  # no webhook at all (a delivery that never reports)
    read_rate: float = 0.8
    click_rate: float = 0.3  # of those read
    transient_error_rate: float = 0.0  # answer 503 to the send (the client retries)
    delay_s: float = 0.5  # between each webhook
    # Campaign messages (kind "campaign") are delivered at this rate, the rest fail.
    campaign_success_rate: float = 0.9


class BehaviourUpdate(BaseModel):
    channel: ChannelName | None = None  # None: both channels
    fail_rate: Rate | None = None
    silent_rate: Rate | None = None
    read_rate: Rate | None = None
    click_rate: Rate | None = None
    transient_error_rate: Rate | None = None
    delay_s: Annotated[float, Field(ge=0, le=3600)] | None = None
    campaign_success_rate: Rate | None = None


class Metadata(BaseModel):
    message_id: str
    user_key: str
    kind: str


class InboundRequest(BaseModel):
    from_: Annotated[str, Field(alias="from", pattern=r"^\+[1-9][0-9]{6,14}$")]
    text: Annotated[str, Field(max_length=1600)]


class SendRequest(BaseModel):
    to: Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")]
    type: Literal["card", "text"]
    card: dict[str, Any] | None = None
    text: str | None = None
    metadata: Metadata


@dataclass(slots=True)
class Accepted:
    provider_message_id: str
    channel: str
    idempotency_key: str
    message_id: str
    user_key: str
    kind: str
    to_masked: str
    content: dict[str, Any]
    received_at: str
    attempts: int = 1
    webhooks: list[str] = field(default_factory=list)


class Simulator:
    def __init__(self, settings: ProviderSimSettings) -> None:
        self.settings = settings
        base = Behaviour(
            settings.sim_fail_rate,
            settings.sim_silent_rate,
            settings.sim_read_rate,
            settings.sim_click_rate,
            settings.sim_transient_error_rate,
            settings.sim_delay_s,
            settings.sim_campaign_success_rate,
        )
        self.behaviour: dict[str, Behaviour] = {"whatsapp": base, "sms": base}
        self.accepted: dict[str, Accepted] = {}
        self.attempts = 0
        self.transient_errors = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        # Webhooks in flight at once, as a provider's webhook workers bound them. Unbounded,
        # 10,000 queued posts made httpcore's pool (which rescans its whole queue per
        # request) the simulator's whole CPU, and webhooks fell minutes behind.
        self._posting = asyncio.Semaphore(settings.sim_webhook_concurrency)

    def secret(self, channel: str) -> str | None:
        value = getattr(self.settings, f"{channel}_webhook_secret")
        return value.get_secret_value() if value is not None else None

    async def start(self) -> None:
        concurrency = self.settings.sim_webhook_concurrency
        self._http = httpx.AsyncClient(
            timeout=5.0,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def take(self, channel: str, key: str, request: SendRequest) -> tuple[Accepted, bool]:
        self.attempts += 1
        found = self.accepted.get(key)
        if found is not None:
            found.attempts += 1
            return found, True
        content = {"card": request.card} if request.type == "card" else {"text": request.text}
        accepted = Accepted(
            provider_message_id=f"{channel[:2]}-{uuid.uuid4().hex}",
            channel=channel,
            idempotency_key=key,
            message_id=request.metadata.message_id,
            user_key=request.metadata.user_key,
            kind=request.metadata.kind,
            to_masked=pii.mask_phone(request.to),
            content=content,
            received_at=datetime.now(UTC).isoformat(),
        )
        self.accepted[key] = accepted
        log.info("accepted %s message %s (%s)", channel, accepted.message_id, accepted.kind)
        task = asyncio.create_task(self._report(accepted))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return accepted, False

    async def _report(self, message: Accepted) -> None:
        behaviour = self.behaviour[message.channel]
        # Seeded by the message: the same message meets the same fate on any run.
        rng = random.Random(hashlib.sha256(message.idempotency_key.encode()).digest())
        fate = rng.random()
        if fate < behaviour.silent_rate:
            return
        fail_rate = behaviour.fail_rate
        if message.kind == "campaign":
            fail_rate = max(fail_rate, 1 - behaviour.campaign_success_rate)
        steps = ["failed"] if fate < behaviour.silent_rate + fail_rate else ["delivered"]
        if steps == ["delivered"] and rng.random() < behaviour.read_rate:
            steps.append("read")
            if rng.random() < behaviour.click_rate:
                steps.append("clicked")
        for status in steps:
            await asyncio.sleep(behaviour.delay_s)
            await self._post_webhook(message, status)

    async def reply(self, channel: str, phone: str, text: str) -> tuple[str, int, bytes]:
        """A shopper's reply posted to the webhook: (provider event id, status, answer)."""
        assert self._http is not None
        if channel == "whatsapp":
            event_id = f"wamid.{uuid.uuid4().hex}"
            body = whatsapp_body(phone, text, event_id, datetime.now(UTC))
            headers = {"Content-Type": "application/json"}
        else:
            event_id = f"SM{uuid.uuid4().hex}"
            body, headers = sms_body(phone, text, event_id), {"Content-Type": FORM}
        secret = self.secret(channel)
        if secret is not None:
            headers.update(signature_headers(secret, int(time.time()), body))
        url = f"{self.settings.webhook_url.rstrip('/')}/v1/webhooks/{channel}"
        async with self._posting:
            response = await self._http.post(url, content=body, headers=headers)
        return event_id, response.status_code, response.content

    async def _post_webhook(self, message: Accepted, status: str) -> None:
        assert self._http is not None
        body = orjson.dumps(
            {
                "event_id": f"{message.provider_message_id}:{status}",
                "provider_message_id": message.provider_message_id,
                "status": status,
                "at": datetime.now(UTC).isoformat(),
                "error_code": "undeliverable" if status == "failed" else None,
                "metadata": {
                    "message_id": message.message_id,
                    "user_key": message.user_key,
                    "kind": message.kind,
                },
            }
        )
        headers = {"Content-Type": "application/json"}
        secret = self.secret(message.channel)
        if secret is not None:
            headers.update(signature_headers(secret, int(time.time()), body))
        url = f"{self.settings.webhook_url.rstrip('/')}/v1/webhooks/{message.channel}"
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(httpx.HTTPError),
                stop=stop_after_attempt(5),
                wait=wait_exponential(multiplier=0.2, max=3),
            ):
                with attempt:
                    async with self._posting:
                        response = await self._http.post(url, content=body, headers=headers)
                    if response.status_code >= 500:
                        raise httpx.HTTPStatusError(
                            "server error", request=response.request, response=response
                        )
        except Exception as exc:
            log.warning("webhook %s for %s not delivered: %s", status, message.message_id, exc)
            return
        message.webhooks.append(f"{status}:{response.status_code}")


def create_sim_app(settings: ProviderSimSettings | None = None) -> FastAPI:
    settings = settings or ProviderSimSettings()
    simulator = Simulator(settings)

    async def lifespan(app: FastAPI):
        await simulator.start()
        yield
        await simulator.stop()

    app = FastAPI(title="intentflow provider simulator", lifespan=lifespan)
    app.state.simulator = simulator

    @app.post("/v1/{channel}/messages")
    async def send(
        channel: ChannelName,
        request: SendRequest,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if not idempotency_key:
            raise HTTPException(400, {"code": "idempotency_key_required"})
        behaviour = simulator.behaviour[channel]
        if behaviour.transient_error_rate and random.random() < behaviour.transient_error_rate:
            simulator.transient_errors += 1
            raise HTTPException(503, {"code": "try_again"})
        accepted, duplicate = simulator.take(channel, idempotency_key, request)
        return {
            "provider_message_id": accepted.provider_message_id,
            "status": "accepted",
            "duplicate": duplicate,
        }

    @app.post("/v1/{channel}/inbound")
    async def inbound(channel: ChannelName, request: InboundRequest) -> dict[str, Any]:
        event_id, status, answer = await simulator.reply(channel, request.from_, request.text)
        return {
            "provider_event_id": event_id,
            "webhook_status": status,
            "answer": orjson.loads(answer or b"null"),
        }

    @app.get("/v1/messages")
    async def messages(message_id: str | None = None) -> dict[str, Any]:
        found = [
            asdict(m)
            for m in simulator.accepted.values()
            if message_id is None or m.message_id == message_id
        ]
        return {
            "messages": found,
            "attempts": simulator.attempts,
            "transient_errors": simulator.transient_errors,
        }

    @app.post("/v1/config")
    async def configure(update: BehaviourUpdate) -> dict[str, Any]:
        changes = update.model_dump(exclude_none=True, exclude={"channel"})
        for channel in [update.channel] if update.channel else ["whatsapp", "sms"]:
            simulator.behaviour[channel] = replace(simulator.behaviour[channel], **changes)
        return {channel: asdict(b) for channel, b in simulator.behaviour.items()}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


@click.command("provider-sim")
@click.option("--host", default=None, help="Default: INTENTFLOW_SIM_HOST, else 127.0.0.1.")
@click.option("--port", type=int, default=None, help="Default: INTENTFLOW_SIM_PORT, else 8025.")
def provider_sim_command(host: str | None, port: int | None) -> None:
    """Run the WhatsApp/SMS provider simulator; webhooks go to INTENTFLOW_WEBHOOK_URL."""
    overrides = {k: v for k, v in (("sim_host", host), ("sim_port", port)) if v is not None}
    settings = ProviderSimSettings(**overrides)
    configure_logging(settings.log_level)
    uvicorn.run(
        create_sim_app(settings),
        host=settings.sim_host,
        port=settings.sim_port,
        log_level="warning",
        access_log=False,
    )
