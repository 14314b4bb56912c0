"""Settings shared by every deployable: frozen, read from INTENTFLOW_* once, passed in.

Each deployable (worker, API, local stack) subclasses ``CommonSettings``; code
below the entry point receives the object and never reads the environment.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.topics import DEFAULT_USER_PARTITIONS
from schemas.warehouse import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S

# Values that ship in the repository so the local stack works out of the box.
# They are refused anywhere else.
PLACEHOLDER_PREFIX = "local-placeholder-"

Environment = Literal["local", "test", "production"]
CommaSet = Annotated[frozenset[str], NoDecode]


def split_commas(value: object) -> object:
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTENTFLOW_", frozen=True, extra="ignore")

    env: Environment = "local"
    # The worker app's id, which is also its Kafka consumer group (the API's health reads it).
    app_id: str = "intentflow"
    kafka_brokers: str = "127.0.0.1:9092"
    clickhouse_url: str = "http://127.0.0.1:8123"
    clickhouse_database: str = "intentflow"
    # Every warehouse request is bounded (schemas/warehouse.py): clickhouse-connect's
    # own default is 300 s. A deployable that must not wait as long lowers it.
    warehouse_connect_timeout_s: float = Field(default=CONNECT_TIMEOUT_S, gt=0)
    warehouse_timeout_s: float = Field(default=REQUEST_TIMEOUT_S, gt=0)
    data_dir: Path = Path(".local-stack")
    rules: Path | None = None
    token_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "token-secret")
    token_key_id: str = "k1"
    pii_master_key: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "pii-master-key")
    # Signs the tracked links in messages (schemas/links.py): the dispatcher makes them,
    # the API's redirect (GET /v1/r/{token}) verifies them. Both must share it.
    link_secret: SecretStr = SecretStr(PLACEHOLDER_PREFIX + "link-secret")
    # Where shoppers' phones and the providers reach our API: tracked links in messages,
    # Twilio's StatusCallback, and the URL Twilio signs its webhooks with.
    public_api_url: str = "http://127.0.0.1:8000"
    # Partitions of every user-keyed topic: the topics, Faust's tables and the collector
    # agree on it; a worker refuses topics that differ (docs/production.md, "Partitions").
    user_partitions: int = Field(default=DEFAULT_USER_PARTITIONS, ge=1, le=1024)
    # This process's /metrics (Prometheus) on its own listener, apart from any public
    # port; None: not served (docs/production.md, "Metrics").
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_bind: str = "127.0.0.1"

    @model_validator(mode="after")
    def _refuse_placeholders_outside_local(self):
        if self.env == "local":
            return self
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX):
                raise ValueError(
                    f"INTENTFLOW_{name.upper()} is a placeholder secret; "
                    f"set a real value when INTENTFLOW_ENV={self.env}"
                )
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [b.strip() for b in self.kafka_brokers.split(",") if b.strip()]
