"""Settings of the dispatcher worker (``intentflow dispatcher``) and the provider simulator."""

from pydantic import Field, SecretStr, model_validator

from pipeline.settings import WorkerSettings
from schemas.settings import CommonSettings


class DispatchSettings(WorkerSettings):
    # Meta's WhatsApp Cloud API: POST {url}/{version}/{phone_number_id}/messages.
    # `intentflow local up` points these at the simulator unless the environment sets them.
    whatsapp_api_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v21.0"
    whatsapp_phone_number_id: str = ""
    whatsapp_access_token: SecretStr = SecretStr("")
    # Twilio's Messages API: POST {url}/2010-04-01/Accounts/{sid}/Messages.json.
    twilio_api_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = ""  # the sending number (E.164) or a Messaging Service's sender
    provider_timeout_s: float = 5.0
    # Requests that certainly did not take (no connection, 429, throughput codes, 5xx) are
    # tried this many times in all; one that may have taken is never resent.
    send_attempts: int = Field(default=4, ge=1)
    send_concurrency: int = Field(default=32, ge=1)
    # No "delivered" on WhatsApp within this → SMS.
    delivery_timeout_s: float = 30.0
    # After a partition is assigned (a restart, a rebalance), delivery timeouts wait this
    # long before falling back: the receipts that piled up meanwhile are read first.
    fallback_grace_s: float = Field(default=5.0, ge=0)
    # Delivery timeouts and held messages handled per clock tick (0.5 s), earliest first.
    tick_max_messages: int = Field(default=256, ge=1)
    # A send whose answer was lost (a crash mid-call, a dropped connection) waits this long
    # for a provider webhook naming it, then ends "unknown"; it is never resent.
    send_unknown_after_s: float = Field(default=120.0, gt=0)
    # A message whose every usable channel is paused waits this long, then is suppressed.
    hold_max_s: float = 3600.0
    # A finished message's record is kept this long (and at least until its decision is
    # too old to send), then deleted: it only has to outlive re-deliveries of uncommitted
    # batches and late receipts.
    record_retention_s: float = Field(default=172_800.0, ge=0)
    # Messages per user per rolling 24 h (admin force-sends are exempt).
    daily_cap: int = Field(default=3, ge=1)
    # Pause switches and revocations are read from the warehouse this often.
    control_poll_s: float = 1.0
    # Every warehouse request (consent lookups, audit inserts, switches) is bounded by this
    # (clickhouse-connect's default is 300 s) and tried this many times before the batch
    # fails loudly; a batch holds the dispatcher's lock, so nothing in it may wait unbounded.
    warehouse_timeout_s: int = Field(default=10, ge=1)
    warehouse_attempts: int = Field(default=3, ge=1)
    # Message variants (pipeline/dispatch/variants.py): the leader takes a snapshot of
    # the evidence this often, in force this long after it is taken (longer than
    # ``control_poll_s``, so every dispatcher has loaded it before any decision it
    # applies to arrives).
    bandit_snapshot_s: float = Field(default=300.0, gt=0)
    bandit_lead_s: float = Field(default=30.0, gt=0)
    # Send-time optimisation (pipeline/dispatch/send_hours.py), when a rule enables it:
    # the leader takes a snapshot of the learned hours this often, in force
    # ``bandit_lead_s`` after it is taken, as the variants' snapshots.
    send_hour_snapshot_s: float = Field(default=3600.0, gt=0)
    storefront_url: str = "http://127.0.0.1:8000/demo"

    @model_validator(mode="after")
    def _snapshots_loaded_before_in_force(self) -> "DispatchSettings":
        if self.bandit_lead_s <= self.control_poll_s:
            raise ValueError(
                f"bandit_lead_s ({self.bandit_lead_s:g}) must exceed control_poll_s "
                f"({self.control_poll_s:g}): a snapshot is loaded before it is in force"
            )
        return self


class ProviderSimSettings(CommonSettings):
    """The provider simulator: the credentials it accepts, where it posts webhooks, and the
    secrets it signs them with (the same names the dispatcher and the API read)."""

    sim_host: str = "127.0.0.1"
    sim_port: int = 8025
    # Meta posts status and inbound webhooks here (the app's configured callback URL);
    # Twilio posts inbound SMS here too, status callbacks to each message's StatusCallback.
    webhook_url: str = "http://127.0.0.1:8000"
    whatsapp_phone_number_id: str = "100000000000001"
    whatsapp_access_token: SecretStr = SecretStr("")
    whatsapp_app_secret: SecretStr = SecretStr("")
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: SecretStr = SecretStr("")
    # The simulated business number Twilio's inbound webhooks are addressed to.
    twilio_from: str = "+15005550006"
    # Outcome rates and delays; also changeable at run time (POST /v1/config).
    sim_fail_rate: float = 0.0
    sim_silent_rate: float = 0.0
    sim_read_rate: float = 0.8
    sim_click_rate: float = 0.3
    sim_transient_error_rate: float = 0.0
    sim_delay_s: float = 0.5
    sim_campaign_success_rate: float = 0.9
    # Set: each shopper reads as their hidden preferred hour has it, seeded by this
    # (pipeline/local/simulate.py, read_chance), the hour in UTC (the simulator knows
    # no shopper's zone) instead of sim_read_rate; send-time optimisation then has a
    # truth to find on the local stack.
    sim_preferred_hour_seed: int | None = None
    sim_webhook_concurrency: int = Field(default=32, ge=1)
    log_level: str = "info"
