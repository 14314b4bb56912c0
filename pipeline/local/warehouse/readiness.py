"""Wait until a warehouse answers ``GET /ping`` with ``Ok.`` (no chDB import needed)."""

import http.client
import time


def pings_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", "/ping")
        response = connection.getresponse()
        return response.status == 200 and response.read() == b"Ok.\n"
    except OSError:
        return False
    finally:
        connection.close()


def wait_until_ready(
    host: str, port: int, timeout_s: float = 30.0, interval_s: float = 0.05
) -> None:
    """Raise TimeoutError if the warehouse does not answer within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not pings_ok(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"warehouse at {host}:{port} did not answer /ping within {timeout_s:g} s"
            )
        time.sleep(interval_s)
