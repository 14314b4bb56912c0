"""Settings: placeholder secrets refused outside local, comma sets, frozen objects."""

import pydantic
import pytest

from api.settings import ApiSettings
from pipeline.dispatch.settings import DispatchSettings
from pipeline.local.settings import LocalStackSettings
from pipeline.settings import WorkerSettings
from schemas.keys import hash_api_key
from schemas.settings import PLACEHOLDER_PREFIX

SETTINGS_CLASSES = [WorkerSettings, ApiSettings, LocalStackSettings]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: nothing leaks in from the machine running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("INTENTFLOW_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
@pytest.mark.parametrize("env", ["test", "production"])
def test_placeholder_secrets_are_refused_outside_local(
    settings_class: type, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTENTFLOW_ENV", env)
    with pytest.raises(pydantic.ValidationError, match="INTENTFLOW_TOKEN_SECRET is a placeholder"):
        settings_class()
    monkeypatch.setenv("INTENTFLOW_TOKEN_SECRET", "a-real-token-secret")
    with pytest.raises(pydantic.ValidationError, match="INTENTFLOW_PII_MASTER_KEY"):
        settings_class()
    monkeypatch.setenv("INTENTFLOW_PII_MASTER_KEY", "a-real-pii-key")
    with pytest.raises(pydantic.ValidationError, match="INTENTFLOW_LINK_SECRET"):
        settings_class()
    monkeypatch.setenv("INTENTFLOW_LINK_SECRET", "a-real-link-secret")
    assert settings_class().env == env


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_placeholders_are_accepted_locally(settings_class: type) -> None:
    settings = settings_class()
    assert settings.env == "local"
    assert settings.token_secret.get_secret_value().startswith(PLACEHOLDER_PREFIX)


def test_comma_separated_key_hashes_parse_into_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = hash_api_key("wk_one"), hash_api_key("wk_two")
    monkeypatch.setenv("INTENTFLOW_WRITE_KEY_HASHES", f" {first}, {second},,")
    monkeypatch.setenv("INTENTFLOW_READ_KEY_HASHES", first)
    settings = ApiSettings()
    assert settings.write_key_hashes == frozenset({first, second})
    assert settings.read_key_hashes == frozenset({first})
    assert settings.admin_key_hashes == frozenset()


def test_kafka_brokers_split_into_bootstrap_servers() -> None:
    settings = WorkerSettings(kafka_brokers="a:9092, b:9093,")
    assert settings.bootstrap_servers == ["a:9092", "b:9093"]


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES)
def test_settings_are_frozen(settings_class: type) -> None:
    settings = settings_class()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.kafka_brokers = "elsewhere:9092"


def test_local_stack_refuses_more_workers_than_partitions() -> None:
    with pytest.raises(pydantic.ValidationError, match="5 workers for 4 partitions"):
        LocalStackSettings(workers=5)
    assert LocalStackSettings(workers=5, user_partitions=12).user_partitions == 12
    with pytest.raises(pydantic.ValidationError, match="13 workers for 12 partitions"):
        LocalStackSettings(workers=13, user_partitions=12)


def test_a_variant_snapshot_is_in_force_only_after_every_dispatcher_loaded_it() -> None:
    with pytest.raises(pydantic.ValidationError, match="must exceed control_poll_s"):
        DispatchSettings(bandit_lead_s=1, control_poll_s=1)
    assert DispatchSettings(bandit_lead_s=2, control_poll_s=1).bandit_lead_s == 2
