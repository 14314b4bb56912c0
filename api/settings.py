"""Settings of the API process, read once in ``create_app`` and injected into routes."""

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from schemas.settings import CommaSet, CommonSettings, split_commas


class ApiSettings(CommonSettings):
    # Only SHA-256 hashes of keys are configured (schemas.keys.hash_api_key).
    write_key_hashes: CommaSet = frozenset()
    server_key_hashes: CommaSet = frozenset()
    read_key_hashes: CommaSet = frozenset()
    admin_key_hashes: CommaSet = frozenset()
    cors_origins: CommaSet = frozenset()
    # Token bucket per key: sustained events per second and burst.
    rate_limit_events_per_s: float = 50_000.0
    rate_limit_burst: int = 100_000
    max_batch_events: int = 500
    max_body_bytes: int = 1 << 20
    # Live collection refuses events whose time is older than this (per event, with the
    # reason): a tracker's offline queue fits, a history does not (docs/collector.md).
    max_event_age_days: int = Field(default=30, ge=1, le=3650)
    produce_timeout_s: float = 5.0
    # Consent groups stored at once (docs/collector.md, "Consents in a batch"). One keeps
    # groups largest: on a warehouse short of CPU (the local one, sharing the collector's
    # cores) each statement costs more than the wait it saves.
    consent_writers: int = Field(default=1, ge=1, le=8)
    # Meta's app secret (X-Hub-Signature-256 of WhatsApp webhooks) and the token of its
    # subscription handshake; Twilio's auth token (X-Twilio-Signature). A provider whose
    # secret is unset has its webhooks refused.
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    # Where message links point (the admin preview renders them as the dispatcher does).
    storefront_url: str = "http://127.0.0.1:8000/demo"
    # Write key the /demo/ storefront embeds in its pages; the demo is off while unset.
    demo_write_key: SecretStr | None = None
    # Server key the demo shop's own backend (/demo/api/) reports orders, reads offers and
    # redeems VIP tokens with, over HTTP at public_api_url as any store backend would; it
    # never reaches a page. Without it the shop takes no orders.
    demo_server_key: SecretStr | None = None
    # Older token signing keys still accepted ("kid:secret,kid:secret"): rotation.
    token_verify_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    # A worker's web server: profiles read the live state through it (Faust routes
    # the request to the worker that owns the user's partition).
    worker_url: str | None = None
    # An order counts as a message's conversion up to this long after its first read/click.
    attribution_window_s: int = Field(default=7 * 86_400, gt=0)
    # Optional: an OpenAI-compatible chat-completions URL asked to turn a phrase the
    # deterministic segment parser cannot read into rules, and asked to draft message variants
    # (api/llm.py). Off by default; the names date from its first use, segments.
    segment_llm_url: str | None = None
    segment_llm_model: str = "gpt-4o-mini"
    segment_llm_api_key: SecretStr | None = None
    segment_llm_timeout_s: float = 10.0

    _split = field_validator(
        "write_key_hashes",
        "server_key_hashes",
        "read_key_hashes",
        "admin_key_hashes",
        "cors_origins",
        mode="before",
    )(split_commas)

    @field_validator("token_verify_keys", mode="before")
    @classmethod
    def _parse_key_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = (part.split(":", 1) for part in value.split(",") if part.strip())
        try:
            return {kid.strip(): secret.strip() for kid, secret in pairs}
        except ValueError:
            raise ValueError("expected kid:secret pairs separated by commas") from None
