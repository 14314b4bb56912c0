"""The collector's personal-data redaction, per event, on simulator traffic.

    python -m benchmarks.redaction

The collector's pure per-event work without redaction (parse, identify-trait sealing,
serialization) against the same with it (ids pseudonymised, every string searched:
api/privacy/traits.py), and the redaction steps alone. CPU time of this process, best
of 7 interleaved rounds: the machine is shared, so the best is the least disturbed.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime

from api.privacy.traits import pseudonymise_ids, redact_events, seal_identity_traits
from pipeline.local.simulate import generate_events
from schemas import pii
from schemas.events import parse_event

MASTER = pii.MasterKey.from_secret("bench")
IP = "203.0.113.9"


def main() -> None:
    at = datetime.now(UTC)
    raws = generate_events(7, 2000, 20000, at, days=0.5)
    parsed = [parse_event(r, received_at=at, ip=IP) for r in raws]

    def before() -> None:
        for event in seal_identity_traits(
            [parse_event(r, received_at=at, ip=IP) for r in raws], MASTER
        ):
            event.to_json()

    def after() -> None:
        events = pseudonymise_ids([parse_event(r, received_at=at, ip=IP) for r in raws], MASTER)
        for event in redact_events(seal_identity_traits(events, MASTER), MASTER):
            event.to_json()

    def steps() -> None:
        redact_events(pseudonymise_ids(parsed, MASTER), MASTER)

    variants: dict[str, Callable[[], None]] = {
        "without redaction": before,
        "with redaction": after,
        "redaction steps alone": steps,
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(7):
        for name, run in variants.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    for name, seconds in best.items():
        rate = len(raws) / seconds
        print(f"{name}: {rate:,.0f} events/s ({seconds / len(raws) * 1e6:.1f} µs/event)")
    ratio = best["without redaction"] / best["with redaction"]
    print(f"with/without: {ratio:.2f}")


if __name__ == "__main__":
    main()
