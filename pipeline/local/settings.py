"""Settings of the local stack deployable (``intentflow local up``)."""

from pydantic import Field

from schemas.settings import CommonSettings
from schemas.topics import USER_PARTITIONS


class LocalStackSettings(CommonSettings):
    host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # None: any free loopback port.
    broker_port: int | None = Field(default=None, ge=1, le=65535)
    warehouse_port: int | None = Field(default=None, ge=1, le=65535)
    # More workers than partitions would sit idle.
    workers: int = Field(default=1, ge=1, le=USER_PARTITIONS)
    simulate: bool = False
    simulate_users: int = 200
    simulate_events: int = 5000
    simulate_rate: float = 200.0
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    log_level: str = "info"
