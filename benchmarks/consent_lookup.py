"""The consent write's read beside the same read over the event history, on a large store.

    .venv/bin/python -m benchmarks.consent_lookup [--rows N] [--repeat R]

A fresh local warehouse (its own process) gets N events generated inside ClickHouse
(a shopper per 25 events, 200,000 for 5 M, with up to three browsers each; half the
events anonymous, from a browser before its shopper signed in), inserted into the real
``events`` table, whose view fills ``identity_links``. Then, R times each, interleaved,
for a group of 20 shoppers whose phone changes are checked (untrusted consents, the
collector's case):
- ``consent_lookup_ms``: the consent store's one read statement (api/privacy/store.py);
- ``consent_lookup_over_events_ms``: the same read taking the links from ``events``
  (``LOOKUP_OVER_EVENTS``, the statement before migration 0300), same answers checked;
- ``consent_lookup_count_ms``: ``SELECT count() FROM events``, the warehouse's floor.
Medians in ms.
"""

import argparse
import statistics
import time

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from api.privacy.store import LOOKUP, LOOKUP_OVER_EVENTS
from benchmarks.warehouse_process import migrated_warehouse

GENERATE = """
INSERT INTO events (event_id, name, timestamp, received_at, user_key, user_id, anonymous_id)
SELECT event_id, name, timestamp, timestamp, if(user_id = '', anonymous_id, user_id),
    user_id, anonymous_id
FROM (
    SELECT
        generateUUIDv4(number) AS event_id,
        ['page_view', 'product_view', 'add_to_cart', 'identify'][1 + rand(1) % 4] AS name,
        fromUnixTimestamp64Milli(toInt64(1759276800000 + rand64(2) % 2592000000), 'UTC')
            AS timestamp,
        rand(3) % {shoppers:UInt64} AS shopper,
        concat('anon-', toString(shopper * 3 + rand(4) % 3)) AS anonymous_id,
        if(rand(5) % 2 = 0, concat('user-', toString(shopper)), '') AS user_id
    FROM numbers({rows:UInt64})
)
"""
GROUP = 20


def load_history(client: Client, rows: int) -> int:
    """``rows`` generated events into ``events`` (its views fill the rest); returns the
    number of shoppers they are spread over (one per 25 events)."""
    shoppers = max(1, rows // 25)
    chunk = 2_000_000  # one huge INSERT ... SELECT would hold every part in memory
    for offset in range(0, rows, chunk):
        client.command(
            GENERATE, parameters={"rows": min(chunk, rows - offset), "shoppers": shoppers}
        )
    return shoppers


def run(rows: int = 5_000_000, repeat: int = 10) -> dict:
    with migrated_warehouse() as url:
        client = clickhouse_connect.get_client(
            dsn=url, database="bench", send_receive_timeout=600, autogenerate_session_id=False
        )
        shoppers = load_history(client, rows)
        stored = client.command("SELECT count() FROM events")

        def lookup(sql: str, round_: int) -> tuple[float, list]:
            keys = [f"user-{(round_ * GROUP + i) * 97 % shoppers}" for i in range(GROUP)]
            started = time.perf_counter()
            found = client.query(sql, parameters={"keys": keys, "checked": keys}).result_rows
            return (time.perf_counter() - started) * 1000, sorted(found)

        def count() -> float:
            started = time.perf_counter()
            client.command("SELECT count() FROM events")
            return (time.perf_counter() - started) * 1000

        # Warm-up: the first statements on a fresh warehouse pay its caches.
        lookup(LOOKUP, -1)
        lookup(LOOKUP_OVER_EVENTS, -1)
        count()
        links, over_events, counts = [], [], []
        for round_ in range(repeat):
            taken, found = lookup(LOOKUP, round_)
            taken_over_events, expected = lookup(LOOKUP_OVER_EVENTS, round_)
            if found != expected or not found:
                raise AssertionError("identity_links and events disagree (or found nothing)")
            links.append(taken)
            over_events.append(taken_over_events)
            counts.append(count())
        client.close()
    result = {
        "consent_lookup_ms": round(statistics.median(links), 1),
        "consent_lookup_over_events_ms": round(statistics.median(over_events), 1),
        "consent_lookup_count_ms": round(statistics.median(counts), 1),
    }
    print(f"events: {stored:,}; a group of {GROUP} shoppers' consent read, {repeat} runs each")
    print(f"  links from identity_links:   {result['consent_lookup_ms']:>8} ms (median)")
    print(f"  links read from events:      {result['consent_lookup_over_events_ms']:>8} ms")
    print(f"  SELECT count() FROM events:  {result['consent_lookup_count_ms']:>8} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    run(args.rows, args.repeat)


if __name__ == "__main__":
    main()
