"""Signal weights fitted to recorded purchases: ``intentflow backtest fit``.

The user score is linear in its signals: at a decision point it is the sum over
signals of weight x (that signal's events, each decayed by the user half-life since it
happened; deep scrolls scaled by the percentage, spec lingers by their dwell). So the
traffic is run once through ``feature_rules`` — the base rules with every flat weight
1 and no cap — and the score's parts at each decision point are exactly those decayed
counts. A logistic regression (scikit-learn, lbfgs: deterministic) learns from them
whether the shopper orders within the horizon (labels as in ``intent_eval.py``).

Making the coefficients rules:

- **Non-negative**: a signal cannot lower a score (the rules forbid negative weights),
  so a signal with a negative coefficient is given weight 0 and the model is refitted
  without it, until every remaining coefficient is positive.
- **Scaled to the base rules' range**: a logistic model is only defined up to the
  ranking its linear score makes, and any positive multiple of the weights ranks alike.
  The multiple is chosen so that the 95th percentile of the fitted score over the
  decision points equals that of the base rules' score: the candidate's scores live in
  the same range as live's, so the cap, the high-intent threshold and its hysteresis
  keep their meaning (about as many moments clear the threshold).
- ``spec_linger`` is weighted by dwell (``scoring.spec_linger``): its feature is
  measured in the base rules' linger points, and the fit scales ``per_second`` and
  ``max`` together by its fitted factor.

Everything else in the base rules is kept; the candidate gets its own ``version``.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.linear_model import LogisticRegression

from pipeline.domain.rules import Rules, parse_rules
from pipeline.domain.signals import SIGNAL_CODES
from pipeline.replay.intent_eval import auc, labels_of

if TYPE_CHECKING:
    from pipeline.replay.intent import IntentTrace

MIN_CLASS = 10
SCALE_QUANTILE = 0.95
# No cap while measuring: the parts must be the plain decayed counts.
_NO_CAP = 1_000_000.0
SIGNALS = tuple(SIGNAL_CODES)  # spec_linger among them: weighted by dwell
_LINGER = "spec_linger"


class TooFewToLearn(ValueError):
    """Too few decision points with, or without, an order in the horizon to fit weights."""


@dataclass(frozen=True, slots=True)
class FittedWeights:
    version: str
    horizon_s: int
    examples: int
    positives: int
    # Per signal: the logistic coefficient (per point of the measured feature), the
    # base rules' weight and the fitted one (spec_linger: the factor on its dwell points).
    coefficients: dict[str, float]
    base: dict[str, float]
    weights: dict[str, float]
    scale: float
    # In-sample AUC of the base rules' and of the fitted weights' (uncapped) score.
    auc_base: float | None
    auc_fitted: float | None


def feature_rules(base: Rules) -> Rules:
    """``base`` with every flat signal weighted 1 and no cap: its score's parts are the
    signals' decayed counts (spec_linger in the base rules' linger points)."""
    raw = base.model_dump(mode="json")
    raw["version"] = f"{base.version}-features"[-64:].lstrip("._-") or "features"
    raw["scoring"]["weights"] = {name: 1.0 for name in SIGNALS if name != _LINGER}
    raw["scoring"]["cap"] = _NO_CAP
    return parse_rules(raw, source="feature rules")


def _base_weights(base: Rules) -> np.ndarray:
    weights = base.scoring.weights
    return np.array([1.0 if name == _LINGER else weights.get(name, 0.0) for name in SIGNALS])


def nonnegative_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Logistic coefficients constrained to be ≥ 0: while one is negative, the most
    negative signal is left out and the rest refitted (backward elimination, one at a
    time: leaving one out can turn another's sign)."""
    coef = np.zeros(x.shape[1])
    active = [i for i in range(x.shape[1]) if x[:, i].any()]
    while active:
        model = LogisticRegression(C=1.0, max_iter=5_000).fit(x[:, active], y)
        found = model.coef_[0]
        worst = int(np.argmin(found))
        if found[worst] >= 0:
            coef[active] = found
            break
        del active[worst]
    return coef


def fit_rules(
    trace: "IntentTrace", base: Rules, horizon_s: int, version: str
) -> tuple[Rules, FittedWeights]:
    """A candidate rule set from a trace made with ``feature_rules(base)`` (with parts)."""
    whole = trace.resolved()
    labels = labels_of(whole.points, whole.orders, horizon_s * 1000, whole.end_ms)
    rows = [i for i, label in enumerate(labels) if label is not None]
    codes = [SIGNAL_CODES[name] for name in SIGNALS]
    x = np.array([[whole.parts[i].get(c, 0.0) for c in codes] for i in rows])
    x = x.reshape(-1, len(codes))
    y = np.array([labels[i] for i in rows], dtype=bool)
    positives = int(y.sum())
    if positives < MIN_CLASS or len(y) - positives < MIN_CLASS:
        raise TooFewToLearn(
            f"{positives} of {len(y)} decision points are followed by an order within "
            f"{horizon_s} s: need at least {MIN_CLASS} with and {MIN_CLASS} without"
        )
    coef = nonnegative_fit(x, y)
    base_w = _base_weights(base)
    base_score = np.minimum(x @ base_w, base.scoring.cap)
    fitted_score = x @ coef
    target, raw_q = (float(np.quantile(s, SCALE_QUANTILE)) for s in (base_score, fitted_score))
    if target <= 0 or raw_q <= 0:
        raise TooFewToLearn("no signal predicts an order: every fitted weight is 0")
    scale = target / raw_q
    weights = {
        name: min(round(float(c) * scale, 3), _NO_CAP)
        for name, c in zip(SIGNALS, coef, strict=True)
    }
    raw = base.model_dump(mode="json")
    raw["version"] = version
    linger = weights.pop(_LINGER)
    raw["scoring"]["weights"] = weights
    spec = raw["scoring"]["spec_linger"]
    spec["per_second"] = round(spec["per_second"] * linger, 4)
    spec["max"] = round(spec["max"] * linger, 3)
    candidate = parse_rules(raw, source="fitted weights")
    return candidate, FittedWeights(
        version=version,
        horizon_s=horizon_s,
        examples=len(y),
        positives=positives,
        coefficients={name: round(float(c), 6) for name, c in zip(SIGNALS, coef, strict=True)},
        base={name: float(w) for name, w in zip(SIGNALS, base_w, strict=True)},
        weights={**weights, _LINGER: linger},
        scale=scale,
        auc_base=auc(base_score.tolist(), y.tolist()),
        auc_fitted=auc(fitted_score.tolist(), y.tolist()),
    )


def fit_lines(fitted: FittedWeights) -> list[str]:
    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        f"fitted {fitted.version}: {fitted.examples:,} decision points, {fitted.positives:,} "
        f"followed by an order within {fitted.horizon_s / 3600:g} h",
        f"  in-sample AUC: base {num(fitted.auc_base)}, fitted {num(fitted.auc_fitted)} "
        "(judge the candidate on other traffic: backtest intent --rules)",
        "  signal: coefficient, base weight -> fitted weight",
    ]
    lines += [
        f"    {name}: {fitted.coefficients[name]:.4f}, {fitted.base[name]:g} -> "
        f"{fitted.weights[name]:g}"
        for name in SIGNALS
    ]
    return lines
