"""Loopback ports: pick a free one, check that a given one is free."""

import random
import socket

LOOPBACK = "127.0.0.1"


# Below Linux's default ephemeral range (32768-60999): the kernel hands ports from that
# range to outgoing connections, and one took a port picked for a worker before the
# worker bound it (seen in make test: "address already in use"). From here only a
# listener that chose the same port can collide.
_PICK_FROM = range(20_000, 32_768)
_handed_out: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free now and was not handed out before by this process."""
    for _ in range(200):
        port = random.choice(_PICK_FROM)
        if port not in _handed_out and port_is_free(port, host):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT would look taken, though servers can bind it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
