"""``intentflow local up``: start, supervise and stop the whole stack on one machine.

Parts, in start order: the Tansu broker (topics pre-created), the chDB warehouse
server, the Faust worker(s), the API; then, optionally, the traffic simulator.
Each runs in its own process group and is stopped in the reverse order of the data
flow: simulator and API (no new input), workers (flush), warehouse, broker.

A core part that dies makes the stack report which one and exit 1: a memory-only
broker or a half-started warehouse cannot be restarted underneath running workers
without losing their offsets, so restarting one part would hide a real failure.
The simulator is not a core part: its exit is reported and the stack keeps running.
"""

import asyncio
import fcntl
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TextIO

import httpx

from pipeline.local.broker import Broker, ensure_topics
from pipeline.local.credentials import ApiKeys, write_env_file
from pipeline.local.demo_catalog import load_demo_catalog
from pipeline.local.ports import free_port, port_is_free
from pipeline.local.processes import ManagedProcess, ProcessError, stop_all
from pipeline.local.providers import provider_env, simulated_credentials
from pipeline.local.readiness import StopRequested, exited_message, http_get, wait_until
from pipeline.local.settings import LocalStackSettings
from pipeline.warehouse.migrate import migrate_database
from schemas.topics import source_topics

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class LocalStack:
    def __init__(
        self, settings: LocalStackSettings, out: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        self.settings = settings
        self.out = out
        self.err = err
        self.data_dir = settings.data_dir.resolve()
        self.logs_dir = self.data_dir / "logs"
        self.keys = ApiKeys.generate()
        self.broker: Broker | None = None
        self.warehouse: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.api: ManagedProcess | None = None
        self.simulator: ManagedProcess | None = None
        self._stop_signal: int | None = None
        self._lock_file: TextIO | None = None
        self.warehouse_port = 0
        self.api_url = f"http://{settings.host}:{settings.api_port}"
        self.sim_url = ""
        # Part name → the URL of its /metrics (each process serves its own).
        self.metrics_urls: dict[str, str] = {}

    # --- entry point -------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGINT/SIGTERM (exit 0) or a failure (exit 1, reason on stderr)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            self.start()
            self.announce()
            return self.supervise()
        except StopRequested:
            return 0
        except ProcessError as exc:
            self._say_error(str(exc))
            return 1
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _stop_requested(self) -> bool:
        return self._stop_signal is not None

    # --- start -----------------------------------------------------------------------------

    def start(self) -> None:
        settings = self.settings
        deadline = time.monotonic() + settings.startup_timeout_s
        self._check_ports_free()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        # The broker keeps nothing across restarts, so old Faust state no longer matches it.
        shutil.rmtree(self.data_dir / "faust", ignore_errors=True)

        self.broker = Broker(
            port=settings.broker_port,
            log_path=self.logs_dir / "broker.log",
            startup_timeout_s=max(1.0, deadline - time.monotonic()),
        )
        self.broker.start()

        # chDB takes a few seconds to load; topics are created meanwhile.
        self.warehouse_port = settings.warehouse_port or free_port(settings.host)
        self.warehouse = self._process(
            "warehouse",
            [
                "-m",
                "pipeline.local.warehouse",
                "--data-path",
                str(self.data_dir / "warehouse"),
                "--host",
                settings.host,
                "--port",
                str(self.warehouse_port),
            ],
        )
        self.warehouse.start()
        try:
            asyncio.run(
                ensure_topics(
                    self.broker.bootstrap_servers, source_topics(settings.user_partitions)
                )
            )
        except Exception as exc:
            raise ProcessError(f"broker: cannot create topics: {exc}") from exc

        wait_until(
            lambda: _answers_ping(self.warehouse_url),
            [self.warehouse, self.broker.process],
            deadline,
            "warehouse",
            self._stop_requested,
        )
        try:
            # Creates the database first (clients that name it cannot connect before).
            migrate_database(self.warehouse_url, settings.clickhouse_database)
        except Exception as exc:
            raise ProcessError(f"warehouse: cannot create the database: {exc}") from exc

        worker_urls = []
        for index in range(settings.workers):
            # Each worker's web server answers profile queries, forwarding each to
            # the worker that owns the user's partition.
            web_port = free_port(settings.host)
            worker_urls.append(f"http://{settings.host}:{web_port}")
            worker = self._process(
                f"worker-{index}",
                ["-m", "pipeline.cli", "worker"],
                extra_env={
                    "INTENTFLOW_WORKER_INDEX": str(index),
                    "INTENTFLOW_WEB_PORT": str(web_port),
                    "INTENTFLOW_WEB_HOST": settings.host,
                },
                metrics=True,
            )
            worker.start()
            self.workers.append(worker)

        # Dispatch: the provider simulator (webhooks back to the API), the dispatcher role
        # and the campaign launcher, which puts due campaigns' messages on the dispatch topic.
        self.sim_url = f"http://{settings.host}:{free_port(settings.host)}"
        sim_env, self.provider_env = provider_env(
            self.sim_url, self.api_url, os.environ, simulated_credentials()
        )
        for name, args, env in (
            ("provider-sim", ["provider-sim", "--port", self.sim_url.rsplit(":", 1)[1]], sim_env),
            ("dispatcher", ["dispatcher"], self.provider_env),
            ("campaigns", ["campaigns"], {}),
        ):
            serves_metrics = name != "provider-sim"  # a stand-in, not part of the pipeline
            part = self._process(name, ["-m", "pipeline.cli", *args], env, serves_metrics)
            part.start()
            self.workers.append(part)  # supervised and stopped with the workers

        self.api = self._process(
            "api",
            [
                "-m",
                "uvicorn",
                "--factory",
                "api.main:create_app",
                "--host",
                settings.host,
                "--port",
                str(settings.api_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            extra_env={
                **self.keys.hash_env(),
                # The demo storefront embeds a write key in its pages, as any storefront does.
                "INTENTFLOW_DEMO_WRITE_KEY": self.keys.keys["write"],
                "INTENTFLOW_DEMO_SERVER_KEY": self.keys.keys["server"],
                "INTENTFLOW_WORKER_URL": worker_urls[0],
                **self.provider_env,
            },
            metrics=True,
        )
        self.api.start()

        self.last_health: str = "no answer"
        wait_until(
            self._healthy,
            self.core_processes(),
            deadline,
            lambda: f"stack (last /v1/health answer: {self.last_health})",
            self._stop_requested,
        )
        try:
            load_demo_catalog(self.api_url, self.keys.keys["server"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            # Messages then say something generic about the demo's products.
            self._say_error(f"demo catalog not loaded: {type(exc).__name__} (the stack runs on)")

    def _lock_data_dir(self) -> None:
        """One stack per data dir: a second one would wipe the first one's worker state."""
        self._lock_file = (self.data_dir / "local-stack.lock").open("w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProcessError(
                f"data dir: {self.data_dir} is in use by another local stack"
            ) from None

    def _healthy(self) -> bool:
        response = http_get(f"{self.api_url}/v1/health")
        if response is None:
            return False
        self.last_health = response.text[:300]
        return response.status_code == 200 and response.json().get("status") == "ok"

    def _check_ports_free(self) -> None:
        settings = self.settings
        for part, port in (
            ("api", settings.api_port),
            ("broker", settings.broker_port),
            ("warehouse", settings.warehouse_port),
        ):
            if port is not None and not port_is_free(port, settings.host):
                raise ProcessError(f"{part}: port {port} on {settings.host} is already in use")

    @property
    def warehouse_url(self) -> str:
        return f"http://{self.settings.host}:{self.warehouse_port}"

    def child_env(self) -> dict[str, str]:
        """INTENTFLOW_* settings every child reads at its entry point."""
        settings = self.settings
        assert self.broker is not None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.update(
            {
                "INTENTFLOW_ENV": settings.env,
                "INTENTFLOW_APP_ID": settings.app_id,
                "INTENTFLOW_KAFKA_BROKERS": self.broker.bootstrap_servers,
                "INTENTFLOW_USER_PARTITIONS": str(settings.user_partitions),
                "INTENTFLOW_CLICKHOUSE_URL": self.warehouse_url,
                "INTENTFLOW_CLICKHOUSE_DATABASE": settings.clickhouse_database,
                "INTENTFLOW_DATA_DIR": str(self.data_dir),
                "INTENTFLOW_LOG_LEVEL": settings.log_level,
                "INTENTFLOW_TOKEN_SECRET": settings.token_secret.get_secret_value(),
                "INTENTFLOW_TOKEN_KEY_ID": settings.token_key_id,
                "INTENTFLOW_PII_MASTER_KEY": settings.pii_master_key.get_secret_value(),
                "INTENTFLOW_LINK_SECRET": settings.link_secret.get_secret_value(),
                # Tracked links lead to this API, and on to its demo shop.
                "INTENTFLOW_PUBLIC_API_URL": self.api_url,
                "INTENTFLOW_STOREFRONT_URL": f"{self.api_url}/demo",
            }
        )
        if settings.rules is not None:
            env["INTENTFLOW_RULES"] = str(settings.rules.resolve())
        return env

    def _process(
        self,
        name: str,
        python_args: list[str],
        extra_env: dict[str, str] | None = None,
        metrics: bool = False,
    ) -> ManagedProcess:
        env = {**self.child_env(), **(extra_env or {})}
        if metrics:
            port = free_port(self.settings.host)
            env["INTENTFLOW_METRICS_PORT"] = str(port)
            self.metrics_urls[name] = f"http://{self.settings.host}:{port}/metrics"
        return ManagedProcess(
            name,
            [sys.executable, *python_args],
            self.logs_dir / f"{name}.log",
            env=env,
            cwd=PROJECT_ROOT,
        )

    # --- running -------------------------------------------------------------------------

    def connection_env(self) -> dict[str, str]:
        assert self.broker is not None
        return {
            "INTENTFLOW_API_URL": self.api_url,
            "INTENTFLOW_KAFKA_BROKERS": self.broker.bootstrap_servers,
            "INTENTFLOW_CLICKHOUSE_URL": self.warehouse_url,
            "INTENTFLOW_CLICKHOUSE_DATABASE": self.settings.clickhouse_database,
            **self.keys.key_env(),
        }

    def announce(self) -> None:
        values = self.connection_env()
        env_file = self.data_dir / "local.env"
        write_env_file(env_file, values)
        lines = [
            "intentflow local stack is up",
            f"  API        {self.api_url}",
            f"  API docs   {self.api_url}/docs",
            f"  demo shop  {self.api_url}/demo/",
            f"  console    {self.api_url}/console/  (sign in with the admin or read key below)",
            f"  phones     {self.sim_url}/phone  (what shoppers receive; follow a link there)",
            f"  providers  {self.sim_url}/v1/messages  (what the provider simulator took)",
            f"  tracker    {self.api_url}/tracker.js",
            f"  health     {self.api_url}/v1/health",
            f"  logs       {self.logs_dir}",
            *(f"  metrics    {url}  ({name})" for name, url in self.metrics_urls.items()),
            f"settings (also in {env_file}; `set -a; . {env_file}; set +a` to load):",
            *(f"  {key}={value}" for key, value in values.items()),
            "Ctrl-C stops everything.",
        ]
        print("\n".join(lines), file=self.out, flush=True)
        if self.settings.simulate:
            self._start_simulator()

    def _start_simulator(self) -> None:
        settings = self.settings
        self.simulator = self._process(
            "simulator",
            [
                "-m",
                "pipeline.cli",
                "simulate",
                "--api",
                self.api_url,
                "--write-key",
                self.keys.keys["write"],
                # Orders and price drops come from a storefront's backend (server key).
                "--server-key",
                self.keys.keys["server"],
                "--users",
                str(settings.simulate_users),
                "--events",
                str(settings.simulate_events),
                "--rate",
                str(settings.simulate_rate),
            ],
        )
        try:
            self.simulator.start()
        except ProcessError as exc:
            self._say_error(f"{exc} (the stack keeps running)")
            self.simulator = None
            return
        print(f"simulator started (log: {self.simulator.log_path})", file=self.out, flush=True)

    def core_processes(self) -> list[ManagedProcess]:
        parts = [self.broker.process] if self.broker is not None else []
        parts += [p for p in (self.warehouse, *self.workers, self.api) if p is not None]
        return parts

    def supervise(self) -> int:
        while not self._stop_requested():
            for process in self.core_processes():
                status = process.returncode()
                if status is not None:
                    self._say_error(f"{exited_message(process, status)}; stopping the stack")
                    return 1
            self._report_simulator()
            time.sleep(0.2)
        return 0

    def _report_simulator(self) -> None:
        if self.simulator is None:
            return
        status = self.simulator.returncode()
        if status is None:
            return
        if status == 0:
            print("simulator finished", file=self.out, flush=True)
        else:
            self._say_error(f"{exited_message(self.simulator, status)} (the stack keeps running)")
        self.simulator = None

    # --- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every part started, in data-flow order; safe after a partial start."""
        timeout = self.settings.stop_timeout_s
        stop_all([p for p in (self.simulator, self.api) if p is not None], timeout)
        stop_all(self.workers, timeout)
        if self.warehouse is not None:
            self.warehouse.stop(timeout)
        if self.broker is not None:
            self.broker.stop()
        if self._lock_file is not None:
            self._lock_file.close()

    def _say_error(self, message: str) -> None:
        print(f"intentflow local: {message}", file=self.err, flush=True)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _answers_ping(url: str) -> bool:
    response = http_get(f"{url}/ping")
    return response is not None and response.status_code == 200 and response.text.strip() == "Ok."


def run_local_stack(settings: LocalStackSettings) -> int:
    return LocalStack(settings).run()
