"""The benchmarks that drive the product's own code in process (sink, replay, fold, the
consent store's read) still
run against it, at a tiny size: they call internals (the sink's batch, the replay
runner), and a change there once broke `make bench` with no test noticing (the sink's
batch began reading each message's key). Figures at this size mean nothing; only that
each run finishes and measures something is checked."""

import pytest

from benchmarks import consent_lookup, fold, replay, sink


@pytest.mark.parametrize(
    ("module", "sizes", "figure"),
    [
        (sink, {"events": 500}, "sink_rows_per_s"),
        (replay, {"events": 500, "users": 50}, "replay_file_events_per_s"),
        (fold, {"events": 2_000, "users": 100}, "fold_events_per_s"),
        (consent_lookup, {"rows": 20_000, "repeat": 1}, "consent_lookup_ms"),
    ],
    ids=["sink", "replay", "fold", "consent_lookup"],
)
def test_the_benchmark_runs_against_the_current_code(module, sizes: dict, figure: str) -> None:
    measured = module.run(**sizes)
    assert measured[figure] > 0, measured
