"""The local stack's providers: the simulator by default, the user's own when configured."""

from pipeline.local.providers import provider_env, simulated_credentials

SIM, API = "http://127.0.0.1:9025", "http://127.0.0.1:8000"


def test_by_default_every_part_gets_the_simulators_address_and_the_same_secrets():
    credentials = simulated_credentials()
    sim, shared = provider_env(SIM, API, {}, credentials)
    assert shared["INTENTFLOW_WHATSAPP_API_URL"] == shared["INTENTFLOW_TWILIO_API_URL"] == SIM
    assert shared["INTENTFLOW_PUBLIC_API_URL"] == API
    for name in ("WHATSAPP_APP_SECRET", "WHATSAPP_ACCESS_TOKEN", "TWILIO_AUTH_TOKEN"):
        assert shared[f"INTENTFLOW_{name}"] == sim[f"INTENTFLOW_{name}"]
    assert sim["INTENTFLOW_WEBHOOK_URL"] == API


def test_a_provider_the_user_configures_is_left_to_their_environment():
    user = {
        "INTENTFLOW_TWILIO_ACCOUNT_SID": "AC" + "9" * 32,
        "INTENTFLOW_TWILIO_AUTH_TOKEN": "real",
        "INTENTFLOW_PUBLIC_API_URL": "https://hooks.example.com",
    }
    _, shared = provider_env(SIM, API, user, simulated_credentials())
    assert not any(k.startswith("INTENTFLOW_TWILIO_") for k in shared)
    assert "INTENTFLOW_PUBLIC_API_URL" not in shared
    assert shared["INTENTFLOW_WHATSAPP_API_URL"] == SIM  # WhatsApp still simulated
