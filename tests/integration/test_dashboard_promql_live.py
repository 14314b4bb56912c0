"""The pipeline-health dashboard's PromQL, evaluated by a real Prometheus scraping a
running local stack: every expression parses, and the panels show data once carts
have been rescued and sent.

Prometheus is Debian's package (``make promtool``, like ``make chromium``); without it
the test fails, naming the make target (``make test`` installs it). Jobs are named as
in deploy/prometheus/prometheus.yml, with static targets (the local stack prints each
process's metrics URL) scraped every two seconds; Grafana's ``$__rate_interval`` becomes 30 s.
"""

import contextlib
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from pipeline.local.processes import ManagedProcess
from tests import support
from tests.integration.test_scale_out import DEMO_RULES, post_abandoned_carts
from tests.unit.test_dashboard_promql import dashboard_exprs

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(autouse=True, scope="module")
def prometheus_installed() -> None:
    if PROMETHEUS is None:  # a failure, not a skip
        pytest.fail("needs Prometheus: make promtool")


JOBS = {"worker": "intentflow-worker", "dispatcher": "intentflow-dispatcher"}
JOBS |= {"campaigns": "intentflow-campaigns", "api": "intentflow-api"}
# Counters that have no series until something goes wrong (no labelled child yet).
EMPTY_WHEN_HEALTHY = {"Dead letters by reason (process counters)", "Provider error share"}
SHOPPERS = 8


def prometheus_config(metrics: dict[str, str]) -> dict:
    targets: dict[str, list[str]] = {}
    for name, url in metrics.items():
        job = JOBS[name.split("-")[0]]
        targets.setdefault(job, []).append(url.removeprefix("http://").removesuffix("/metrics"))
    return {
        # A busy process may answer /metrics late (its server thread shares the GIL):
        # scrapes get the whole interval.
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": hosts}]}
            for job, hosts in targets.items()
        ],
    }


def query(prometheus: str, expr: str) -> dict:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]


def test_every_panel_expression_parses_and_shows_the_running_stack(tmp_path: Path) -> None:
    env = support.child_env(RULES=str(DEMO_RULES), SIM_DELAY_S="0.2", LOG_LEVEL="warning")
    with support.local_stack(tmp_path, env=env, timeout_s=120) as stack:
        # Picked once the stack listens: picked before, one of its parts took it once
        # ("bind: address already in use" in prometheus.log).
        prometheus_port = support.free_port()
        prometheus = f"http://{support.LOOPBACK}:{prometheus_port}"
        metrics = stack.metrics
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(metrics)))
        assert PROMETHEUS is not None
        scraper = ManagedProcess(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={support.LOOPBACK}:{prometheus_port}",
            ],
            tmp_path / "prometheus.log",
        )
        scraper.start()
        try:
            support.wait_for_http(f"{prometheus}/-/ready", 60)

            post_abandoned_carts(stack, [f"promql-{n}" for n in range(SHOPPERS)])

            def scraped_sends() -> bool:
                sent = query(prometheus, "sum(intentflow_provider_request_seconds_count)")["result"]
                return bool(sent) and float(sent[0]["value"][1]) >= SHOPPERS

            support.wait_for(scraped_sends, 90, "the sends scraped", interval_s=1)

            empty: list[str] = []

            def every_panel_has_data() -> bool:
                empty[:] = []
                for where, expr in dashboard_exprs():
                    data = query(prometheus, expr.replace("$__rate_interval", "30s"))
                    title = where.split(": ", 1)[1]
                    if not data["result"] and title not in EMPTY_WHEN_HEALTHY:
                        empty.append(f"{title}: {expr}")
                return not empty

            with contextlib.suppress(TimeoutError):  # the assertion below names the panels
                support.wait_for(every_panel_has_data, 60, "every panel with data", interval_s=2)
            targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
            health = [
                (t["labels"]["job"], t["health"], t["lastError"]) for t in targets["activeTargets"]
            ]
            assert not empty, "panels with no data:\n" + "\n".join(empty) + f"\ntargets: {health}"
            up = query(prometheus, 'up{job=~"intentflow-.*"}')["result"]
            assert {r["metric"]["job"] for r in up} == set(JOBS.values())
            assert all(r["value"][1] == "1" for r in up), up
        finally:
            scraper.stop(10)
