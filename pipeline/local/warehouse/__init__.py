"""The local warehouse: one process owns a chDB data path and answers ClickHouse's HTTP
interface for it, so every other process uses clickhouse-connect as in production.

Run it with ``python -m pipeline.local.warehouse --data-path DIR [--host H] [--port N]``;
it is ready when ``GET /ping`` answers ``Ok.``.
"""

from pipeline.local.warehouse.readiness import pings_ok, wait_until_ready


def serve(data_path: str, host: str = "127.0.0.1", port: int = 8123) -> None:
    """Serve until SIGTERM or SIGINT; see `server.serve`."""
    # Imported here: importing chdb starts an engine, which processes that only
    # probe readiness should not pay for.
    from pipeline.local.warehouse.server import serve as serve_forever

    serve_forever(data_path, host, port)


__all__ = ["pings_ok", "serve", "wait_until_ready"]
