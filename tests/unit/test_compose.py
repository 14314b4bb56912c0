"""docker-compose.yml against what the code accepts (Docker itself is not needed).

Compose cannot run here, so this reads the file as Compose would and checks it
against the real CLI (click commands and options), the settings classes
(INTENTFLOW_* fields, built under INTENTFLOW_ENV=production from a generated
.env), the declared topics, the Grafana provisioning and the ClickHouse users.
"""

import importlib.util
import os
import re
import shlex
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from pipeline.campaigns.command import CampaignSettings
from pipeline.cli import main as cli
from pipeline.dispatch.settings import DispatchSettings, ProviderSimSettings
from pipeline.settings import WorkerSettings
from schemas import keys
from schemas.settings import PLACEHOLDER_PREFIX, CommonSettings
from schemas.topics import source_topics
from tests.support import PROJECT_ROOT

COMPOSE_PATH = PROJECT_ROOT / "docker-compose.yml"
COMPOSE = yaml.safe_load(COMPOSE_PATH.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INTENTFLOW_IMAGE = SERVICES["worker"]["image"]
# Services that run the intentflow image.
OURS = {name for name, s in SERVICES.items() if s.get("image") == INTENTFLOW_IMAGE}
PREFIX = "INTENTFLOW_"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}|\$([A-Za-z_]\w*)")


def _load_make_env():
    spec = importlib.util.spec_from_file_location("make_env", PROJECT_ROOT / "deploy/make_env.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_env = _load_make_env()


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}; a missing required one raises."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        found = env.get(name, "")
        if operator and operator.endswith("?") and not found:
            raise KeyError(f"{name}: {argument}")
        if operator and operator.endswith("-") and not found:
            return argument
        return found

    return _VARIABLE.sub(substitute, value)


def variables_in(text: str) -> dict[str, str | None]:
    """Name → operator (None, ':-' or ':?') of every ${...} in a text."""
    return {m.group(1) or m.group(4): m.group(2) for m in _VARIABLE.finditer(text)}


def environment(service: str, env: dict[str, str]) -> dict[str, str]:
    values = SERVICES[service].get("environment", {})
    assert isinstance(values, dict), f"{service}: write environment as a mapping"
    return {key: interpolate(str(value), env) for key, value in values.items()}


def command(service: str) -> list[str]:
    value = SERVICES[service]["command"]
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def settings_class(service: str) -> type[BaseSettings] | None:
    """The settings class the service's process reads, from its command."""
    argv = command(service)
    if argv[0] == "uvicorn":
        return ApiSettings
    return {
        "worker": WorkerSettings,
        "dispatcher": DispatchSettings,
        "provider-sim": ProviderSimSettings,
        "campaigns": CampaignSettings,
        "migrate": CommonSettings,
    }.get(argv[1])


def click_command(argv: list[str]) -> click.Command:
    assert argv[0] == "intentflow", argv
    group: click.Command = cli
    for word in argv[1:]:
        if word.startswith("-") or not isinstance(group, click.Group):
            break
        assert word in group.commands, f"`intentflow` has no command {word!r}"
        group = group.commands[word]
    return group


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    """A fresh .env as deploy/make_env.py writes it (the documented first step)."""
    return make_env.env_values()


def test_the_stack_has_the_parts_of_the_design() -> None:
    core = {"kafka", "kafka-init", "clickhouse", "migrate", "worker", "api", "grafana"}
    assert core | {"prometheus"} <= set(SERVICES)
    assert {"migrate", "worker", "dispatcher", "campaigns", "provider-sim", "api"} <= OURS


def test_images_are_official_and_pinned_to_a_version() -> None:
    expected = {
        "kafka": "apache/kafka",
        "kafka-init": "apache/kafka",
        "clickhouse": "clickhouse/clickhouse-server",
        "grafana": "grafana/grafana",
    }
    for service, repository in expected.items():
        name, _, tag = SERVICES[service]["image"].partition(":")
        assert name == repository
        assert re.fullmatch(r"\d+(\.\d+)+", tag), f"{service}: pin a version, not {tag!r}"
    # Prometheus tags its releases with a leading v (prom/prometheus:v3.13.1).
    name, _, tag = SERVICES["prometheus"]["image"].partition(":")
    assert name == "prom/prometheus"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"prometheus: pin a version, not {tag!r}"
    assert SERVICES["kafka"]["image"] == SERVICES["kafka-init"]["image"]
    for service in OURS:
        assert SERVICES[service]["build"]["context"] == "."


def test_every_intentflow_command_is_one_the_cli_accepts(
    dotenv: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in OURS - {"api"}:
        argv = command(service)
        found = click_command(argv)
        # Let click parse the arguments (and option envvars) exactly as the CLI would.
        with monkeypatch.context() as patch:
            for key, value in environment(service, dotenv).items():
                patch.setenv(key, value)
            found.make_context(argv[1], argv[2:], resilient_parsing=False)


def test_the_api_command_is_the_documented_uvicorn_factory() -> None:
    argv = command("api")
    assert argv[:3] == ["uvicorn", "--factory", "api.main:create_app"]
    module, _, attribute = argv[2].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert argv[argv.index("--port") + 1] == "8000"
    assert SERVICES["api"]["ports"][0].endswith(":8000")


def test_intentflow_services_take_only_intentflow_variables_their_settings_accept(
    dotenv: dict[str, str],
) -> None:
    for service in OURS:
        env = environment(service, dotenv)
        assert env, f"{service} has no environment"
        cls = settings_class(service)
        accepted = {PREFIX + name.upper() for name in (cls.model_fields if cls else {})}
        if cls is None:  # configured by its command's options instead
            argv = command(service)
            accepted = {p.envvar for p in click_command(argv).params if isinstance(p.envvar, str)}
        unknown = set(env) - accepted
        assert not unknown, f"{service}: {sorted(unknown)} are not settings it reads"
        assert all(name.startswith(PREFIX) for name in env), service


def test_settings_build_from_the_compose_environment_in_production(
    dotenv: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exactly what each process does at start: read INTENTFLOW_* (production refuses
    placeholder secrets, wrong types fail here)."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for service in OURS:
        cls = settings_class(service)
        if cls is None:
            continue
        env = environment(service, dotenv)
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            settings = cls()
        assert settings.env == "production"
        assert settings.bootstrap_servers == ["kafka:9092"]
        assert settings.clickhouse_url.startswith("http://intentflow:")
        for field in settings.model_fields:
            value = getattr(settings, field)
            secret = getattr(value, "get_secret_value", None)
            text = secret() if secret else value
            assert not (isinstance(text, str) and text.startswith(PLACEHOLDER_PREFIX)), field
        if isinstance(settings, WorkerSettings):
            assert settings.recovery_consistency_check is True
            assert settings.web_enabled is False or service == "dispatcher"
        if isinstance(settings, ApiSettings):
            for scope in keys.KEY_PREFIXES:
                key = dotenv[f"INTENTFLOW_{scope.upper()}_KEY"]
                assert keys.key_matches(key, getattr(settings, f"{scope}_key_hashes"))


def test_compose_refuses_to_start_without_the_secrets() -> None:
    for service in OURS - {"simulate"}:
        with pytest.raises(KeyError):
            environment(service, {})


def test_env_example_and_make_env_cover_every_required_variable(dotenv: dict[str, str]) -> None:
    required = {n for n, op in variables_in(COMPOSE_PATH.read_text()).items() if op == ":?"}
    example = {}
    for line in (PROJECT_ROOT / "deploy/.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            example[name] = value
    assert required <= set(example), sorted(required - set(example))
    assert required <= set(dotenv), sorted(required - set(dotenv))
    # Every variable the file reads is documented, optional ones too.
    documented = (PROJECT_ROOT / "deploy/.env.example").read_text()
    for name in variables_in(COMPOSE_PATH.read_text()):
        assert name in documented, f"{name} is not documented in deploy/.env.example"


def test_make_env_writes_keys_the_api_recognises(dotenv: dict[str, str]) -> None:
    assert make_env.KEY_PREFIXES == keys.KEY_PREFIXES
    for scope, prefix in keys.KEY_PREFIXES.items():
        key = dotenv[f"INTENTFLOW_{scope.upper()}_KEY"]
        assert key.startswith(prefix)
        assert dotenv[f"INTENTFLOW_{scope.upper()}_KEY_HASHES"] == keys.hash_api_key(key)
    # URL-safe (the ClickHouse password sits in a URL) and no `$` for Compose to expand.
    for name, value in dotenv.items():
        if not name.endswith("_URL"):
            assert re.fullmatch(r"[A-Za-z0-9_-]+", value), name
    assert len(dotenv["INTENTFLOW_TOKEN_SECRET"].encode()) >= 32
    assert len(dotenv["KAFKA_CLUSTER_ID"]) == 22
    assert make_env.env_values() != dotenv  # fresh secrets every time


@pytest.mark.parametrize("partitions", [None, "12"], ids=["default", "set"])
def test_topics_created_at_start_are_the_declared_ones(
    dotenv: dict[str, str], partitions: str | None
) -> None:
    env = dotenv | ({"INTENTFLOW_USER_PARTITIONS": partitions} if partitions else {})
    init = SERVICES["kafka-init"]
    # The processes read the count kafka-init creates the topics with.
    count = int(environment("worker", env)["INTENTFLOW_USER_PARTITIONS"])
    assert count == int(partitions or 4)
    declared = {spec.name: spec.partitions for spec in source_topics(count)}
    topics = environment("kafka-init", env)["TOPICS"]
    listed = dict(item.split(":") for item in topics.split())
    assert {name: int(n) for name, n in listed.items()} == declared
    assert init["environment"]["BOOTSTRAP"] == "kafka:9092"
    mount = init["volumes"][0].split(":")
    assert (PROJECT_ROOT / mount[0]).is_file() and init["entrypoint"][-1] == mount[1]
    assert SERVICES["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


@pytest.mark.parametrize(
    ("partitions_seen", "exit_code"), [(4, 0), (2, 1)], ids=["match", "mismatch"]
)
def test_create_topics_script_fails_on_a_partition_mismatch(
    tmp_path: Path, partitions_seen: int, exit_code: int
) -> None:
    """The script against a stand-in kafka-topics.sh printing --describe's format."""
    calls = tmp_path / "calls"
    fake = tmp_path / "kafka-topics.sh"
    partition_lines = "".join(
        f"\\tTopic: t\\tTopicId: x\\tPartition: {p}\\tLeader: 1\\tReplicas: 1\\tIsr: 1\\n"
        for p in range(partitions_seen)
    )
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$*" in *--describe*) printf "Topic: t\\tTopicId: x\\t'
        f'PartitionCount: {partitions_seen}\\tReplicationFactor: 1\\n{partition_lines}";; esac\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    result = subprocess.run(
        ["sh", str(PROJECT_ROOT / "deploy/kafka/create-topics.sh")],
        env={"PATH": os.environ["PATH"], "KAFKA_BIN": str(tmp_path), "TOPICS": "t:4"}
        | {"BOOTSTRAP": "kafka:9092"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == exit_code, result.stderr
    create = calls.read_text().splitlines()[0]
    assert "--create --if-not-exists --topic t --partitions 4" in create


def test_workers_scale_without_sharing_state() -> None:
    worker = SERVICES["worker"]
    # --scale needs generated names and no fixed host port.
    assert "container_name" not in worker and "ports" not in worker
    named = set(COMPOSE.get("volumes") or {})
    for volume in worker.get("volumes", []):
        source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
        assert source not in named, "a named volume would be shared by every replica"
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    data_dir = SERVICES["worker"]["environment"]["INTENTFLOW_DATA_DIR"]
    assert f'VOLUME ["{data_dir}"]' in dockerfile  # one anonymous volume per replica
    for service in ("worker", "api"):
        needs = SERVICES[service]["depends_on"]
        for step in ("kafka-init", "migrate"):
            assert needs[step]["condition"] == "service_completed_successfully"


def test_grafana_gets_every_variable_its_provisioning_reads(dotenv: dict[str, str]) -> None:
    grafana = environment("grafana", dotenv)
    provisioning = PROJECT_ROOT / "dashboards/provisioning"
    for path in provisioning.rglob("*.yaml"):
        for name in variables_in(path.read_text()):
            assert grafana.get(name), f"{path.name} reads ${name}, not set for grafana"
    assert grafana["INTENTFLOW_READ_KEY"] == dotenv["INTENTFLOW_READ_KEY"]
    assert grafana["INTENTFLOW_API_URL"] == "http://api:8000"


def test_grafana_installs_pinned_plugins_for_every_provisioned_datasource() -> None:
    plugins = dict(
        item.split("@")
        for item in SERVICES["grafana"]["environment"]["GF_PLUGINS_PREINSTALL_SYNC"].split(",")
    )
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in plugins.values()), plugins
    built_in = {"prometheus"}
    for path in (PROJECT_ROOT / "dashboards/provisioning/datasources").glob("*.yaml"):
        for datasource in yaml.safe_load(path.read_text())["datasources"]:
            assert datasource["type"] in plugins.keys() | built_in, path.name


PROMETHEUS_CONFIG = PROJECT_ROOT / "deploy/prometheus/prometheus.yml"


def test_prometheus_scrapes_every_process_that_serves_metrics(dotenv: dict[str, str]) -> None:
    prometheus = SERVICES["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # No login on Prometheus: its UI is published on the host's loopback only.
    assert all(port.startswith("127.0.0.1:") for port in prometheus["ports"])
    scraped: dict[str, int] = {}
    for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]:
        for lookup in job.get("dns_sd_configs", []):
            # One A record per replica: a scaled service is scraped whole.
            assert lookup["type"] == "A"
            for name in lookup["names"]:
                scraped[name] = lookup["port"]
    serving = {}
    for service in OURS:
        env = environment(service, dotenv)
        if "INTENTFLOW_METRICS_PORT" in env:
            serving[service] = int(env["INTENTFLOW_METRICS_PORT"])
            # Reachable from the Prometheus container, and never published on the host.
            assert env["INTENTFLOW_METRICS_BIND"] == "0.0.0.0"
            published = [str(p).rsplit(":", 1)[-1] for p in SERVICES[service].get("ports", [])]
            assert env["INTENTFLOW_METRICS_PORT"] not in published, service
    assert serving == scraped
    assert {"worker", "dispatcher", "campaigns", "api"} <= set(serving)


def test_grafana_reads_the_stacks_prometheus(dotenv: dict[str, str]) -> None:
    grafana = environment("grafana", dotenv)
    path = PROJECT_ROOT / "dashboards/provisioning/datasources/prometheus.yaml"
    (datasource,) = yaml.safe_load(path.read_text())["datasources"]
    url = interpolate(datasource["url"], grafana)
    assert url == "http://prometheus:9090"
    assert SERVICES["grafana"]["depends_on"]["prometheus"]


def test_grafana_mounts_point_at_the_repository_files() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    for source in mounts:
        if source.startswith("./"):
            assert (PROJECT_ROOT / source).is_dir(), source
    provider = yaml.safe_load(
        (PROJECT_ROOT / "dashboards/provisioning/dashboards/intentflow.yaml").read_text()
    )["providers"][0]
    assert mounts["./dashboards/json"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (PROJECT_ROOT / "dashboards/json" / Path(home).name).is_file()


def test_clickhouse_users_match_the_urls_and_grafana_is_read_only(dotenv: dict[str, str]) -> None:
    clickhouse = environment("clickhouse", dotenv)
    api = environment("api", dotenv)
    database = api["INTENTFLOW_CLICKHOUSE_DATABASE"]
    assert (
        clickhouse["CLICKHOUSE_DB"]
        == database
        == environment("grafana", dotenv)["CLICKHOUSE_DATABASE"]
    )
    url = api["INTENTFLOW_CLICKHOUSE_URL"]
    assert url == (
        f"http://{clickhouse['CLICKHOUSE_USER']}:{clickhouse['CLICKHOUSE_PASSWORD']}"
        "@clickhouse:8123"
    )
    mount = next(v for v in SERVICES["clickhouse"]["volumes"] if "users.d" in v)
    root = ET.parse(PROJECT_ROOT / mount.split(":")[0]).getroot()
    user = root.find("users/grafana")
    assert user is not None
    password_env = user.find("password").get("from_env")
    assert clickhouse[password_env] == dotenv["CLICKHOUSE_GRAFANA_PASSWORD"]
    profile = root.find(f"profiles/{user.findtext('profile')}")
    assert profile.findtext("readonly") == "1"
    grants = [q.text for q in user.findall("grants/query")]
    assert grants == [f"GRANT SELECT ON {database}.*"]
    datasource = next(
        d
        for d in yaml.safe_load(
            (PROJECT_ROOT / "dashboards/provisioning/datasources/intentflow.yaml").read_text()
        )["datasources"]
        if d["type"] == "grafana-clickhouse-datasource"
    )
    assert datasource["jsonData"]["username"] == user.tag


def test_dockerfile_builds_a_pinned_non_root_image() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*-slim", text, re.MULTILINE)
    assert "-c constraints.txt" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "tests"} <= set(ignored)
