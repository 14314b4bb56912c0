"""A running warehouse: the engine on its data path and the HTTP server answering for it."""

import errno
import logging
import os
import signal
import threading
from types import FrameType, TracebackType

from pipeline.local.warehouse.engine import DataPathInUse, Engine
from pipeline.local.warehouse.handler import WarehouseHTTPServer, WarehouseRequestHandler

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8123  # ClickHouse's HTTP port


class WarehouseStartError(Exception):
    """The warehouse cannot start; the message says why in one line."""


class Warehouse:
    """Binds the port first, then opens the data path, so either failure leaves nothing behind."""

    def __init__(self, data_path: str, host: str = LOOPBACK, port: int = DEFAULT_PORT) -> None:
        try:
            self._http = WarehouseHTTPServer((host, port), WarehouseRequestHandler)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise WarehouseStartError(f"cannot listen on {host}:{port}: {reason}") from None
        try:
            os.makedirs(data_path, exist_ok=True)
            self._http.engine = Engine(data_path)
        except (DataPathInUse, OSError) as exc:
            self._http.server_close()
            raise WarehouseStartError(str(exc)) from None
        except Exception as exc:
            self._http.server_close()
            raise WarehouseStartError(f"cannot open chDB at {data_path}: {exc}") from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> "Warehouse":
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="warehouse-http", daemon=True
        )
        self._thread.start()
        host, port = self.address
        log.info(
            "warehouse: chDB %s answering on http://%s:%d", self._http.engine.version, host, port
        )
        return self

    def stop(self) -> None:
        """Stop accepting, let running requests finish, close chDB."""
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()
        self._http.engine.close()

    def __enter__(self) -> "Warehouse":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(data_path: str, host: str = LOOPBACK, port: int = DEFAULT_PORT) -> None:
    """Serve until SIGTERM or SIGINT (call from the main thread). Raises WarehouseStartError."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    warehouse = Warehouse(data_path, host, port)
    # Installed after chDB has started, so these handlers are the ones in force.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    previous = {sig: signal.signal(sig, request_stop) for sig in stop_signals}
    # A caller may have held these back while chDB started; a pending one stops us now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    try:
        with warehouse:
            stop.wait()
            log.info("warehouse: stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
