"""Which WhatsApp and Twilio the local stack talks to: the simulator, unless the user says.

By default the dispatcher is pointed at ``intentflow provider-sim`` with fresh
credentials per run, and the simulator, the API and the dispatcher all get the same
ones (the sim checks the access token and basic auth, and signs its webhooks with
the app secret and auth token the API verifies). A provider for which the user's
environment sets any ``INTENTFLOW_WHATSAPP_*`` (or ``INTENTFLOW_TWILIO_*``) is left
entirely to that environment, which every child inherits: the local stack then
sends for real through it. ``INTENTFLOW_PUBLIC_API_URL`` (where Twilio posts status
callbacks) is honoured the same way, else it is the local API's address.
"""

import secrets
from collections.abc import Mapping

PROVIDERS = ("WHATSAPP", "TWILIO")


def simulated_credentials() -> dict[str, str]:
    """Fresh credentials for one run, as each provider shapes them."""
    return {
        "INTENTFLOW_WHATSAPP_PHONE_NUMBER_ID": str(100_000_000_000_000 + secrets.randbelow(10**14)),
        "INTENTFLOW_WHATSAPP_ACCESS_TOKEN": "EAAsim" + secrets.token_urlsafe(32),
        "INTENTFLOW_WHATSAPP_APP_SECRET": secrets.token_hex(16),
        "INTENTFLOW_WHATSAPP_VERIFY_TOKEN": secrets.token_urlsafe(16),
        "INTENTFLOW_TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "INTENTFLOW_TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "INTENTFLOW_TWILIO_FROM": "+15005550006",
    }


def user_configured(environ: Mapping[str, str]) -> set[str]:
    """The providers (WHATSAPP, TWILIO) the user's environment configures."""
    return {p for p in PROVIDERS if any(k.startswith(f"INTENTFLOW_{p}_") for k in environ)}


def provider_env(
    sim_url: str, api_url: str, environ: Mapping[str, str], credentials: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(the simulator's environment, everyone else's) for the providers' settings."""
    mine = user_configured(environ)
    shared: dict[str, str] = {}
    if "INTENTFLOW_PUBLIC_API_URL" not in environ:
        shared["INTENTFLOW_PUBLIC_API_URL"] = api_url
    simulated = {"WHATSAPP_API_URL": sim_url, "TWILIO_API_URL": sim_url}
    for provider in PROVIDERS:
        if provider in mine:
            continue
        shared.update(
            {k: v for k, v in credentials.items() if k.startswith(f"INTENTFLOW_{provider}_")}
        )
        shared.update(
            {f"INTENTFLOW_{k}": v for k, v in simulated.items() if k.startswith(provider)}
        )
    # The simulator always runs with its own credentials (its harness still plays replies).
    sim = {**credentials, "INTENTFLOW_WEBHOOK_URL": api_url}
    return sim, shared
