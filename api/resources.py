"""Long-lived clients owned by the API process, opened and closed by the lifespan."""

from types import TracebackType

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from api.settings import ApiSettings


class Resources:
    """Connections are made lazily so the API starts (and reports health) while a part is down."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._clickhouse: Client | None = None

    def clickhouse(self) -> Client:
        if self._clickhouse is None:
            self._clickhouse = clickhouse_connect.get_client(
                dsn=self.settings.clickhouse_url,
                database=self.settings.clickhouse_database,
                connect_timeout=3,
                send_receive_timeout=30,
                autogenerate_session_id=False,
            )
        return self._clickhouse

    async def __aenter__(self) -> "Resources":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._clickhouse is not None:
            self._clickhouse.close()
