"""Long-lived clients owned by the API process, opened and closed by the lifespan."""

import asyncio
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient
from clickhouse_connect.driver.client import Client

from api.producer import EventProducer
from api.ratelimit import TokenBuckets
from api.settings import ApiSettings
from schemas.warehouse import warehouse_of


class Resources:
    """Connections are made lazily so the API starts (and reports health) while a part is down."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._clickhouse: Client | None = None
        self._kafka_admin: AIOKafkaAdminClient | None = None
        self._kafka_admin_lock = asyncio.Lock()
        # The collector's producer (started on first use) and its per-key rate limits.
        self.events = EventProducer(settings)
        self.rate_limits = TokenBuckets(settings.rate_limit_events_per_s, settings.rate_limit_burst)

    def clickhouse(self) -> Client:
        if self._clickhouse is None:
            self._clickhouse = warehouse_of(self.settings)
        return self._clickhouse

    async def kafka_admin(self, timeout_s: float = 2.0) -> AIOKafkaAdminClient:
        """A started admin client; raises (and retries on the next call) while Kafka is down."""
        async with self._kafka_admin_lock:
            if self._kafka_admin is None:
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.settings.bootstrap_servers,
                    client_id="intentflow-api",
                    request_timeout_ms=int(timeout_s * 1000),
                )
                try:
                    await asyncio.wait_for(admin.start(), timeout_s)
                except BaseException:
                    await admin.close()
                    raise
                self._kafka_admin = admin
            return self._kafka_admin

    async def __aenter__(self) -> "Resources":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.events.close()
        if self._clickhouse is not None:
            self._clickhouse.close()
        if self._kafka_admin is not None:
            await self._kafka_admin.close()
