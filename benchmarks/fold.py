"""How fast the domain fold runs on one core, beside a trivial reference.

    .venv/bin/python -m benchmarks.fold [--events N] [--users U]

Prints events/s of ``apply`` over a realistic mix of already-parsed events
(median of 3 runs, state per user in a dict as the agent keeps it), the same
for a reference loop (``orjson.loads`` + a dict update per event) measured in
the same run, their ratio, and the serialized size of the resulting states.
"""

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import orjson

from pipeline.domain import apply, default_rules, state_to_bytes
from schemas.events import Event, parse_event

START = datetime(2025, 11, 20, 8, 0, tzinfo=UTC)
# (event name, share of traffic) seen on a typical storefront.
MIX = [
    ("page_view", 22),
    ("product_view", 24),
    ("spec_linger", 12),
    ("deep_scroll", 12),
    ("search", 8),
    ("button_click", 6),
    ("add_to_cart", 6),
    ("remove_from_cart", 1),
    ("exit_intent", 4),
    ("checkout_started", 2),
    ("order_placed", 1),
    ("consent", 1),
    ("identify", 1),
]


def _properties(name: str, rng: random.Random, product: str) -> dict:
    category = f"c{int(product[1:]) % 20}"
    match name:
        case "page_view":
            return {"url": f"https://shop.example/p/{product}"}
        case "product_view":
            return {"product_id": product, "category": category, "price": 19.9}
        case "spec_linger":
            return {
                "product_id": product,
                "dwell_ms": rng.randint(500, 40_000),
                "category": category,
            }
        case "deep_scroll":
            return {"percentage": rng.choice([25, 50, 75, 100])}
        case "search":
            return {"query": "running shoes"}
        case "button_click":
            return {"element_id": "size-42", "text": "42"}
        case "add_to_cart" | "remove_from_cart":
            return {"product_id": product, "quantity": 1, "price": 19.9, "category": category}
        case "order_placed":
            item = {"product_id": product, "quantity": 1, "amount": 19.9}
            return {
                "order_id": f"o{rng.getrandbits(40)}",
                "items": [item],
                "total": 19.9,
                "currency": "EUR",
            }
        case "consent":
            return {
                "channel": "whatsapp",
                "granted": True,
                "phone": "+491511234567",
                "purpose": "marketing",
            }
        case "identify":
            return {"traits": {}}
        case _:
            return {}


def make_events(count: int, users: int, seed: int = 7) -> tuple[list[Event], list[bytes]]:
    """Interleaved sessions in event-time order, parsed, and their JSON for the reference."""
    rng = random.Random(seed)
    names = [name for name, _ in MIX]
    weights = [share for _, share in MIX]
    clock = START
    events, raws = [], []
    for _ in range(count):
        clock += timedelta(milliseconds=rng.randint(1, 40))
        user = rng.randrange(users)
        name = rng.choices(names, weights)[0]
        # Shoppers look at a handful of products each.
        product = f"p{(user * 7 + rng.randrange(5)) % 2000}"
        raw = {
            "event_id": str(UUID(int=rng.getrandbits(128), version=4)),
            "name": name,
            "timestamp": clock.isoformat(),
            "anonymous_id": f"anon-{user}",
            "user_id": f"user-{user}" if user % 3 == 0 else None,
            "properties": _properties(name, rng, product),
            "context": {"timezone": "Europe/Berlin"},
        }
        if name == "identify":
            raw["user_id"] = f"user-{user}"
        event = parse_event(raw, received_at=clock)
        events.append(event)
        raws.append(event.to_json())
    return events, raws


def run_fold(events: list[Event]) -> tuple[float, dict, int]:
    rules = default_rules()
    states: dict = {}
    decisions = 0
    started = time.perf_counter()
    for event in events:
        key = event.key
        state, out = apply(states.get(key), event, rules)
        states[key] = state
        decisions += len(out)
    return time.perf_counter() - started, states, decisions


def run_reference(raws: list[bytes]) -> float:
    states: dict = {}
    loads = orjson.loads
    started = time.perf_counter()
    for raw in raws:
        event = loads(raw)
        key = event.get("user_id") or event["anonymous_id"]
        state = states.get(key)
        if state is None:
            state = states[key] = {}
        state[event["name"]] = state.get(event["name"], 0) + 1
    return time.perf_counter() - started


def run(events: int = 200_000, users: int = 5_000) -> dict:
    parsed, raws = make_events(events, users)
    fold_runs, reference_runs = [], []
    for _ in range(3):
        elapsed, states, decisions = run_fold(parsed)
        fold_runs.append(len(parsed) / elapsed)
        reference_runs.append(len(raws) / run_reference(raws))
    sizes = sorted(len(state_to_bytes(state)) for state in states.values())
    return {
        "fold_events_per_s": statistics.median(fold_runs),
        "fold_reference_events_per_s": statistics.median(reference_runs),
        "events": len(parsed),
        "user_keys": len(states),
        "decisions": decisions,
        "state_bytes_median": sizes[len(sizes) // 2],
        "state_bytes_p90": sizes[len(sizes) * 9 // 10],
        "state_bytes_max": sizes[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5_000)
    args = parser.parse_args()
    result = run(args.events, args.users)
    fold_rate, reference_rate = result["fold_events_per_s"], result["fold_reference_events_per_s"]
    events, states, decisions = result["events"], range(result["user_keys"]), result["decisions"]
    sizes = [result["state_bytes_median"], result["state_bytes_p90"], result["state_bytes_max"]]
    print(f"events: {events:,} over {len(states):,} user keys; decisions per run: {decisions:,}")
    print(f"fold (apply):               {fold_rate:>12,.0f} events/s  (median of 3)")
    print(f"reference (orjson + dict):  {reference_rate:>12,.0f} events/s  (median of 3)")
    print(f"fold / reference:           {fold_rate / reference_rate:>12.2f}")
    print(f"state bytes per user: median {sizes[0]}, p90 {sizes[1]}, max {sizes[2]}")


if __name__ == "__main__":
    main()
