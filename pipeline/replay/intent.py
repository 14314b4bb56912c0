"""``intentflow backtest intent`` and ``backtest fit``: scores against purchases.

One pass of a rule set over recorded traffic (the sources replay reads, through the
same ``ReplayRunner``: the live engine's logic, in memory, nothing written anywhere)
collects what the evaluation needs: every decision point with the shopper's score
(and, for fitting, the score's per-signal parts), the orders, the high-intent
triggers, and which anonymous ids became which user ids. The maths is
``intent_eval.py``'s; fitting is ``fit.py``'s.
"""

import asyncio
import sys
from dataclasses import dataclass, field
from math import exp
from pathlib import Path
from typing import Any

import click
import yaml

from pipeline.domain.rules import MILLI, Rules, RulesError, rules_from
from pipeline.domain.scoring import value
from pipeline.domain.state import UserState
from pipeline.progress import Progress
from pipeline.replay.fit import TooFewToLearn, feature_rules, fit_lines, fit_rules
from pipeline.replay.intent_eval import IntentReport, Moment, Point, evaluate, report_lines
from pipeline.replay.namespace import run_topics
from pipeline.replay.options import ISO_MOMENT
from pipeline.replay.recorded import RecordFileError
from pipeline.replay.replay import RecordedSource, recorded_source, source_window
from pipeline.replay.runner import ReplayRunner, longest_deadline_ms
from pipeline.settings import WorkerSettings
from pipeline.warehouse.erasures import command_erasures
from schemas.erasure import ErasureList
from schemas.events import SERVER_EVENTS, Event
from schemas.fast_events import FastEvent
from schemas.messages import Nudge, load_decision
from schemas.time import epoch_ms

# Names the in-memory run's topics; nothing is written to them.
_RUN_ID = "backtest-intent"
DEFAULT_HORIZON_S = 86_400


@dataclass(slots=True)
class IntentTrace:
    """What one pass of ``rules`` over recorded traffic saw, keyed by the engine's user keys."""

    rules: Rules
    points: list[Point] = field(default_factory=list)
    # Per point, with ``parts``: the score's contribution of each signal code, in points.
    parts: list[dict[str, float]] = field(default_factory=list)
    orders: list[Moment] = field(default_factory=list)
    triggers: list[Moment] = field(default_factory=list)
    # anonymous id -> the first user id seen with it (an identify, a logged-in event).
    links: dict[str, str] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int = 0

    def person(self, key: str) -> str:
        """One shopper's key, whether the engine knew them anonymously or logged in."""
        return self.links.get(key, key)

    def resolved(self) -> "IntentTrace":
        """The same trace with every key replaced by its shopper's (after the whole pass:
        a link learnt late still joins the points before it)."""
        person = self.person
        return IntentTrace(
            self.rules,
            [Point(person(p.person), p.at_ms, p.score) for p in self.points],
            self.parts,
            [Moment(person(o.person), o.at_ms) for o in self.orders],
            [Moment(person(t.person), t.at_ms) for t in self.triggers],
            {},
            self.start_ms,
            self.end_ms,
        )

    def report(self, horizon_s: int) -> IntentReport:
        whole = self.resolved()
        return evaluate(
            whole.points,
            whole.orders,
            whole.triggers,
            horizon_s * 1000,
            whole.start_ms,
            whole.end_ms,
            self.rules.version,
        )


class _Observer:
    """Reads the shopper's score right after each of their events is folded."""

    def __init__(self, rules: Rules, trace: IntentTrace, with_parts: bool) -> None:
        self._rate = rules.plan.decay_user
        self._trace = trace
        self._with_parts = with_parts
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def __call__(self, event: Event | FastEvent, state: UserState | None) -> None:
        ts = event.ts_ms
        if self.first_ms is None or ts < self.first_ms:
            self.first_ms = ts
        if self.last_ms is None or ts > self.last_ms:
            self.last_ms = ts
        trace = self._trace
        if event.user_id is not None and event.anonymous_id:
            trace.links.setdefault(event.anonymous_id, event.user_id)
        if event.name in SERVER_EVENTS or state is None:  # None: a claim, folded elsewhere
            return
        # The shopper's clock: a late event must not see the events folded after it.
        at = max(ts, state.last_ms)
        score = state.user
        trace.points.append(Point(event.key, at, value(score, at, self._rate) / MILLI))
        if self._with_parts:
            factor = exp(-self._rate * (at - score.t)) / MILLI
            trace.parts.append({code: v * factor for code, v in score.parts.items()})


async def trace_intent(
    rules: Rules,
    source: RecordedSource,
    erasures: ErasureList | None = None,
    *,
    with_parts: bool = False,
    progress: Progress | None = None,
) -> IntentTrace:
    """Run ``rules`` over the recorded traffic in memory and collect the trace."""
    trace = IntentTrace(rules)
    async with source:
        topics = run_topics(_RUN_ID, source.topic)
        observer = _Observer(rules, trace, with_parts)
        runner = ReplayRunner(
            rules, source.partitions, topics, source.handovers_logged, erasures, observer
        )
        if progress is not None:
            progress.fraction = source.progress
        nudges: dict[str, Moment] = {}

        def collect() -> None:
            for topic, _, raw, _ in runner.take_outputs():
                if topic != topics.nudges or raw is None:
                    continue
                decision = load_decision(raw)
                if isinstance(decision, Nudge) and decision.kind == "high_intent":
                    nudges.setdefault(
                        decision.nudge_id,
                        Moment(decision.user_key, epoch_ms(decision.triggered_at)),
                    )

        async for batch in source.batches():
            runner.feed(batch)
            collect()
            if progress is not None:
                progress.advance(len(batch))
        last = observer.last_ms or 0
        end_ms = source.end_ms if source.end_ms is not None else last
        # Fire the held nudges too: a trigger held through the night is still a trigger.
        runner.finish(end_ms + longest_deadline_ms(rules))
        collect()
    trace.orders = [Moment(o.user_key, o.ordered_ms) for o in runner.orders.values()]
    trace.triggers = sorted(nudges.values(), key=lambda m: m.at_ms)
    trace.start_ms = observer.first_ms or 0
    trace.end_ms = end_ms
    return trace


# --- the commands ---------------------------------------------------------------


def _source_options(command):
    for option in reversed(
        [
            click.option("--topic", help="Read this topic's events of --from/--to."),
            click.option("--from", "from_", type=ISO_MOMENT, help="Start of the range (--topic)."),
            click.option("--to", type=ISO_MOMENT, help="End of the range, exclusive (--topic)."),
            click.option(
                "--file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Read an export (intentflow export) instead of a topic.",
            ),
            click.option(
                "--rules",
                "rules_path",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="The rule set (YAML or TOML). Default: INTENTFLOW_RULES, else the default.",
            ),
            click.option(
                "--horizon-s",
                type=click.IntRange(min=1),
                default=DEFAULT_HORIZON_S,
                show_default=True,
                help="A decision point is positive when the shopper orders within this many s.",
            ),
        ]
    ):
        command = option(command)
    return command


def _trace(source: dict[str, Any], with_parts: bool) -> tuple[Rules, IntentTrace]:
    """The base rules the options name, and the trace of a pass over the recorded traffic
    (under ``feature_rules(base)`` when fitting, so the score's parts are the features)."""
    settings = WorkerSettings()
    try:
        base = rules_from(source["rules_path"] or settings.rules)
        window = source_window(source["topic"], source["from_"], source["to"], source["file"])
    except (RulesError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    erasures = command_erasures(settings)
    recorded = recorded_source(
        source["file"], source["topic"], window, tuple(settings.bootstrap_servers)
    )
    rules = feature_rules(base) if with_parts else base
    progress = Progress("backtest")
    try:
        trace = asyncio.run(
            trace_intent(rules, recorded, erasures, with_parts=with_parts, progress=progress)
        )
    except (RecordFileError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    return base, trace


@click.command("intent")
@_source_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def intent_command(horizon_s: int, as_json: bool, **source: Any) -> None:
    """How well a rule set's scores and high-intent trigger predict a purchase.

    Runs the rules over recorded traffic in memory (nothing is written) and reports the
    score's AUC and the trigger's precision, recall and lift over the base rate, for
    orders within --horizon-s of a decision point (docs/replay.md, "Intent backtest").
    """
    report = _trace(source, with_parts=False)[1].report(horizon_s)
    if as_json:
        click.echo(report.model_dump_json(), file=sys.stdout)
    else:
        click.echo("\n".join(report_lines(report)), file=sys.stdout)


@click.command("fit")
@_source_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="Where to write the candidate rule set (YAML).",
)
@click.option("--version", "version", help="The candidate's rules version. Default: <base>-fit.")
def fit_command(horizon_s: int, out: Path, version: str | None, **source: Any) -> None:
    """Fit signal weights to recorded purchases and write a candidate rule set.

    A logistic regression (scikit-learn) over the score's per-signal parts at every
    decision point, labelled by an order within --horizon-s; the weights it finds,
    non-negative and scaled to the base rules' score range, replace the base rules'
    (everything else is kept). Replay the candidate and compare it with live.
    """
    base, trace = _trace(source, with_parts=True)
    try:
        candidate, fitted = fit_rules(trace, base, horizon_s, version or f"{base.version}-fit")
    except (TooFewToLearn, RulesError) as exc:
        raise click.ClickException(str(exc)) from None
    out.write_text(rules_yaml(candidate), encoding="utf-8")
    click.echo("\n".join([*fit_lines(fitted), f"wrote {out}"]), file=sys.stdout)


def rules_yaml(rules: Rules) -> str:
    """A rule set as a rules file (what ``rules_from`` reads back)."""
    header = "# A candidate rule set written by `intentflow backtest fit`; see docs/replay.md.\n"
    return header + yaml.safe_dump(rules.model_dump(mode="json"), sort_keys=False)
