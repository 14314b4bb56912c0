"""``intentflow campaigns``: launch due campaigns, and release messages deferred
through members' quiet hours, polling the warehouse.

One process is enough (a launch of 10,000 members takes about a second); two
would both launch a due campaign, harmlessly: member and message ids are the
same, so the warehouse and the dispatcher collapse the repeat.
"""

import asyncio
import contextlib
import logging
import signal

import click
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from pipeline.campaigns.launcher import (
    due_campaigns,
    launch,
    load_campaign,
    mark_failed,
    release_due,
    utc_now,
)
from pipeline.worker import configure_logging
from schemas.process_metrics import serving_metrics
from schemas.settings import CommonSettings
from schemas.topics import NUDGES
from schemas.warehouse import warehouse_of

log = logging.getLogger(__name__)


class CampaignSettings(CommonSettings):
    # How often the warehouse is asked for due campaigns.
    campaign_poll_s: float = 1.0
    log_level: str = "info"


# The warehouse or the broker not answering: every campaign waits for the next poll.
UNAVAILABLE = (OperationalError, KafkaError, OSError, TimeoutError)


async def launch_or_fail(client: Client, producer: AIOKafkaProducer, campaign_id: str) -> None:
    """Launch one due campaign; one that cannot launch is marked failed with the reason,
    so it neither blocks the others nor is retried every poll."""
    try:
        campaign = await asyncio.to_thread(load_campaign, client, campaign_id)
        if campaign is not None:
            await launch(client, producer, NUDGES.name, campaign, utc_now())
    except UNAVAILABLE:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        # The reason goes to the warehouse (admins read it); the log names the type only.
        log.error("campaign %s failed and will not launch (%s)", campaign_id, type(exc).__name__)
        await asyncio.to_thread(mark_failed, client, campaign_id, reason)


async def run_launcher(settings: CampaignSettings, stop: asyncio.Event) -> None:
    client = await asyncio.to_thread(warehouse_of, settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="intentflow-campaigns",
        acks="all",
        enable_idempotence=False,  # Tansu has no InitProducerId; ids dedup downstream
        linger_ms=5,
    )
    await producer.start()
    try:
        while not stop.is_set():
            try:
                for campaign_id in await asyncio.to_thread(due_campaigns, client, utc_now()):
                    await launch_or_fail(client, producer, campaign_id)
                await release_due(client, producer, NUDGES.name, utc_now())
            except Exception as exc:  # the warehouse or broker away: try again next poll
                log.warning("campaign launch deferred: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.campaign_poll_s)
    finally:
        await producer.stop()
        client.close()


@click.command("campaigns")
@click.option("--poll-s", type=float, default=None, help="Default: INTENTFLOW_CAMPAIGN_POLL_S.")
def campaigns_command(poll_s: float | None) -> None:
    """Launch due campaigns (POST /v1/campaigns) onto the dispatch path; runs until SIGTERM."""
    settings = CampaignSettings(**({"campaign_poll_s": poll_s} if poll_s else {}))
    configure_logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_launcher(settings, stop)

    with serving_metrics(settings):
        asyncio.run(main())
