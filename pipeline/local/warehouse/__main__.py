"""python -m pipeline.local.warehouse --data-path DIR [--host H] [--port N] [--log-level L]"""

import argparse
import logging
import signal
import sys

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: list[str] | None = None) -> int:
    # Importing chdb installs chDB's own SIGINT handler, which swallows the signal;
    # hold stop signals until serve() has installed its handlers (it unblocks them).
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    from pipeline.local.warehouse.server import (
        DEFAULT_PORT,
        LOOPBACK,
        WarehouseStartError,
        serve,
    )

    parser = argparse.ArgumentParser(
        prog="python -m pipeline.local.warehouse",
        description="Own a chDB data path and answer ClickHouse's HTTP interface for it.",
    )
    parser.add_argument(
        "--data-path", required=True, help="chDB data directory (created if missing)"
    )
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        serve(args.data_path, args.host, args.port)
    except WarehouseStartError as exc:
        print(f"warehouse: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
