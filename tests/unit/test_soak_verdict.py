"""The soak's verdict over samples (tests/soak/verdict.py): memory within 10 % after
warm-up, lag bounded, zero errors, and a named exception judged by its own bound."""

from tests.soak.verdict import MB, Allowance, Sample, judge, table

WARMUP_S = 60.0
LAG_BOUND = 1_000.0


def steady(
    rss_mb: list[float], lag: float | None = 10.0, errors: float = 0.0, decisions_per_s=1.0
) -> list[Sample]:
    """One sample every 30 s from t=0; decisions counted at ``decisions_per_s``."""
    return [
        Sample(
            30.0 * i,
            mb * MB,
            lag,
            errors if i == len(rss_mb) - 1 else 0.0,
            30 * i * decisions_per_s,
        )
        for i, mb in enumerate(rss_mb)
    ]


def test_a_steady_stack_passes_and_counts_decisions_per_minute() -> None:
    judgement = judge(
        {"worker-0": steady([100, 180, 200, 205, 209]), "api": steady([80, 90, 90, 91, 92], None)},
        WARMUP_S,
        LAG_BOUND,
    )
    assert judgement.ok, judgement.failures
    assert judgement.verdict().startswith("verdict: PASS")
    worker = judgement.figures[0]
    # Growth before warm-up (100 → 200 MB) does not count; 200 → 209 MB is +4.5 %.
    assert (worker.rss_warm, worker.rss_end) == (200 * MB, 209 * MB)
    assert worker.decisions_per_min == 60.0
    assert "worker-0" in table(judgement) and "+4.5%" in table(judgement)


def test_memory_growing_past_ten_percent_after_warmup_fails() -> None:
    judgement = judge({"dispatcher": steady([100, 100, 100, 106, 111])}, WARMUP_S, LAG_BOUND)
    assert not judgement.ok
    assert judgement.failures == ["dispatcher: memory +11% after warm-up (100 → 111 MB)"]


def test_lag_over_its_bound_after_warmup_fails_but_not_during_warmup() -> None:
    during = steady([100] * 5)
    during[0] = Sample(0.0, 100 * MB, 50_000.0, 0.0, 0.0)  # catching up at the start
    assert judge({"worker-0": during}, WARMUP_S, LAG_BOUND).ok
    late = steady([100] * 5)
    late[3] = Sample(90.0, 100 * MB, 1_500.0, 0.0, 90.0)
    judgement = judge({"worker-0": late}, WARMUP_S, LAG_BOUND)
    assert judgement.failures == ["worker-0: lag reached 1500 records after warm-up (bound 1000)"]


def test_a_lag_that_keeps_growing_fails_even_under_its_bound() -> None:
    def lagging(lags: list[float]) -> list[Sample]:
        return [Sample(30.0 * i, 100 * MB, lag, 0.0, 0.0) for i, lag in enumerate(lags)]

    # Under the bound (1000) but it trebled after warm-up: the worker is not keeping up.
    judgement = judge({"worker-0": lagging([0, 50, 300, 600, 900])}, WARMUP_S, LAG_BOUND)
    assert judgement.failures == [
        "worker-0: lag growing, 300 → 900 records after warm-up (not keeping up)"
    ]
    # Noise around a small lag is not growth (under a tenth of the bound).
    assert judge({"worker-0": lagging([0, 5, 10, 40, 90])}, WARMUP_S, LAG_BOUND).ok
    # Nor is a lag that came back down.
    assert judge({"worker-0": lagging([0, 500, 300, 900, 400])}, WARMUP_S, LAG_BOUND).ok


def test_any_error_fails_naming_the_process() -> None:
    judgement = judge({"api": steady([100] * 4, errors=2)}, WARMUP_S, LAG_BOUND)
    assert judgement.failures == ["api: 2 errors"]
    assert judgement.verdict().startswith("verdict: FAIL — api: 2 errors")


def test_an_allowed_growth_is_named_with_its_bound_and_judged_by_it() -> None:
    growing = {"broker": steady([100, 200, 300, 400, 500], None)}
    bounded = {"broker": Allowance("Tansu keeps every record", 400 * MB)}
    judgement = judge(growing, WARMUP_S, LAG_BOUND, bounded)
    assert judgement.ok
    assert judgement.exceptions == [
        "broker memory +67% (+200 MB, bound 400 MB: Tansu keeps every record)"
    ]
    assert "except broker memory +67%" in judgement.verdict()
    tight = {"broker": Allowance("Tansu keeps every record", 150 * MB)}
    judgement = judge(growing, WARMUP_S, LAG_BOUND, tight)
    assert judgement.failures == [
        "broker: memory +200 MB after warm-up, over its bound of 150 MB (Tansu keeps every record)"
    ]


def test_a_process_without_samples_after_warmup_fails() -> None:
    judgement = judge({"campaigns": steady([100, 100])}, WARMUP_S, LAG_BOUND)
    assert judgement.failures == ["campaigns: not measured after warm-up"]
