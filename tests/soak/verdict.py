"""The soak's verdict: a pure function of the samples taken from each process.

A process passes when, after warm-up, its resident memory ends within 10 % of what it
was when warm-up ended, its consumer lag never exceeded the bound and did not keep
growing (it ends above twice its value when warm-up ended, and above a tenth of the
bound, so that noise around a small lag is not growth), and it logged no error. A
process that may grow for a known reason (Tansu keeps every record in memory) is
named with its reason and judged against its own bound instead.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MEMORY_TOLERANCE = 0.10
MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    t_s: float  # seconds since the soak started
    rss_bytes: float
    lag: float | None  # the worst partition's lag; None: the process reads no topic
    errors: float  # cumulative since start: error lines logged, records dead-lettered
    decisions: float  # cumulative since start (stream workers; 0 elsewhere)
    cpu_s: float = 0.0  # CPU seconds used since the process started (printed, not judged)


@dataclass(frozen=True)
class Allowance:
    """Memory growth after warm-up allowed to one process, and why."""

    reason: str
    max_growth_bytes: float


@dataclass(frozen=True)
class Figures:
    process: str
    rss_warm: float
    rss_end: float
    max_lag: float | None  # after warm-up
    end_lag: float | None
    errors: float
    decisions_per_min: float

    @property
    def growth(self) -> float:
        return (self.rss_end - self.rss_warm) / self.rss_warm if self.rss_warm else 0.0


@dataclass
class Judgement:
    figures: list[Figures] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def verdict(self) -> str:
        if self.failures:
            return "verdict: FAIL — " + "; ".join(self.failures)
        text = "verdict: PASS — memory within 10 % after warm-up, lag bounded, zero errors"
        if self.exceptions:
            text += "; except " + "; ".join(self.exceptions)
        return text


def judge(
    series: Mapping[str, Sequence[Sample]],
    warmup_s: float,
    lag_bound: float,
    allowances: Mapping[str, Allowance] | None = None,
) -> Judgement:
    """Judge every process's samples (oldest first); see the module doc for the rules."""
    allowances = allowances or {}
    judgement = Judgement()
    for process, samples in series.items():
        after = [s for s in samples if s.t_s >= warmup_s]
        if len(after) < 2:
            judgement.failures.append(f"{process}: not measured after warm-up")
            continue
        warm, end = after[0], after[-1]
        lags = [s.lag for s in after if s.lag is not None]
        minutes = (end.t_s - samples[0].t_s) / 60
        figures = Figures(
            process,
            warm.rss_bytes,
            end.rss_bytes,
            max(lags) if lags else None,
            end.lag,
            end.errors,
            (end.decisions - samples[0].decisions) / minutes if minutes > 0 else 0.0,
        )
        judgement.figures.append(figures)

        if figures.growth > MEMORY_TOLERANCE:
            grown = end.rss_bytes - warm.rss_bytes
            allowance = allowances.get(process)
            if allowance is None:
                judgement.failures.append(
                    f"{process}: memory +{figures.growth:.0%} after warm-up "
                    f"({warm.rss_bytes / MB:.0f} → {end.rss_bytes / MB:.0f} MB)"
                )
            elif grown > allowance.max_growth_bytes:
                judgement.failures.append(
                    f"{process}: memory +{grown / MB:.0f} MB after warm-up, over its bound "
                    f"of {allowance.max_growth_bytes / MB:.0f} MB ({allowance.reason})"
                )
            else:
                judgement.exceptions.append(
                    f"{process} memory +{figures.growth:.0%} (+{grown / MB:.0f} MB, bound "
                    f"{allowance.max_growth_bytes / MB:.0f} MB: {allowance.reason})"
                )
        if figures.max_lag is not None and figures.max_lag > lag_bound:
            judgement.failures.append(
                f"{process}: lag reached {figures.max_lag:.0f} records after warm-up "
                f"(bound {lag_bound:.0f})"
            )
        elif (
            warm.lag is not None
            and end.lag is not None
            and end.lag > 2 * warm.lag
            and end.lag > lag_bound / 10
        ):
            judgement.failures.append(
                f"{process}: lag growing, {warm.lag:.0f} → {end.lag:.0f} records after "
                "warm-up (not keeping up)"
            )
        if figures.errors:
            judgement.failures.append(f"{process}: {figures.errors:.0f} errors")
    return judgement


def table(judgement: Judgement) -> str:
    headers = ("process", "rss warm MB", "rss end MB", "Δ", "max lag", "end lag", "errors")
    headers += ("decisions/min",)
    rows = [
        (
            f.process,
            f"{f.rss_warm / MB:.0f}",
            f"{f.rss_end / MB:.0f}",
            f"{f.growth:+.1%}",
            "—" if f.max_lag is None else f"{f.max_lag:.0f}",
            "—" if f.end_lag is None else f"{f.end_lag:.0f}",
            f"{f.errors:.0f}",
            f"{f.decisions_per_min:.0f}" if f.decisions_per_min else "—",
        )
        for f in judgement.figures
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
