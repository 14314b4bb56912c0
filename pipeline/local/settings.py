"""Settings of the local stack deployable (``intentflow local up``)."""

from pydantic import Field, model_validator

from schemas.settings import CommonSettings


class LocalStackSettings(CommonSettings):
    host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # None: any free loopback port.
    broker_port: int | None = Field(default=None, ge=1, le=65535)
    warehouse_port: int | None = Field(default=None, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    simulate: bool = False
    simulate_users: int = 200
    simulate_events: int = 5000
    simulate_rate: float = 200.0
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    log_level: str = "info"

    @model_validator(mode="after")
    def _workers_within_partitions(self):
        if self.workers > self.user_partitions:
            raise ValueError(
                f"{self.workers} workers for {self.user_partitions} partitions: "
                "the extra workers would sit idle (raise INTENTFLOW_USER_PARTITIONS)"
            )
        return self
