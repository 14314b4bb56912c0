"""The Quix Streams reference of ``make bench``: the per-user work with RocksDB state.

    .venv-quix/bin/python benchmarks/quix_reference.py --brokers HOST:PORT --topic T
        --group G --state-dir DIR --events N

Runs in its own virtualenv (``make bench`` builds ``.venv-quix`` from
benchmarks/quix/constraints.txt: Quix pins pydantic<2.14, the project 2.14.3), so it
imports only quixstreams and the standard library, never the project.

From the start of ``--topic`` with a fresh consumer group, per event: parse the JSON
(Quix's json deserializer), read the user's state (the message key's, in Quix's
RocksDB store, changelog on), decay its score by the event time elapsed since the
user's previous event, count, write back. Commits every 0.5 s, stops after
``--events`` events and prints one JSON line: events, and seconds from the first to
the last event processed.
"""

import argparse
import json
import time
from datetime import datetime

from quixstreams import Application, State

HALF_LIFE_S = 600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args()

    app = Application(
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=0.5,
        state_dir=args.state_dir,
        use_changelog_topics=True,
        loglevel="WARNING",
    )
    # Created beforehand by the harness, with an explicit retention.ms: Quix derives
    # its changelog topic's config from the source topic's retention.ms.
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="bytes")
    seen = {"first": 0.0, "last": 0.0, "count": 0}

    def per_user(event: dict, state: State) -> None:
        now = time.perf_counter()
        if not seen["count"]:
            seen["first"] = now
        at = datetime.fromisoformat(event["timestamp"]).timestamp()
        user = state.get("user")
        if user is None:
            user = {"score": 0.0, "count": 0, "at": at}
        elapsed = max(0.0, at - user["at"])
        user["score"] = user["score"] * 0.5 ** (elapsed / HALF_LIFE_S) + 1.0
        user["count"] += 1
        user["at"] = at
        state.set("user", user)
        seen["count"] += 1
        seen["last"] = now

    app.dataframe(topic).update(per_user, stateful=True)
    app.run(count=args.events, collect=False)
    seconds = seen["last"] - seen["first"]
    print(json.dumps({"events": seen["count"], "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
