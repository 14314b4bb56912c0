"""Lookalike audiences: the shoppers outside a segment who behave most like its members.

A logistic regression (scikit-learn) learns, from every profile's behavioural features
(api/queries/lookalikes.py), what tells the segment's members from everyone else; the
non-members are ranked by the probability it gives them. The model is refitted on the
warehouse's data at each request: nothing is stored, so it never describes shoppers who
have been erased. Deterministic: the same rows give the same ranking (lbfgs, ties
broken by user key).

Numbers are log-scaled (spend, counts and days are long-tailed) and standardised;
categories, country and device are one-hot over the values at least ``MIN_SHARE`` of
profiles have, so a rare value cannot single out a person. ``class_weight="balanced"``
keeps a small segment from being drowned by the rest.
"""

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

MIN_MEMBERS = 10
MIN_SHARE = 0.01
NUMERIC = ("total_spend", "orders", "visits", "intent_score", "days_since_first_seen")
NUMERIC += ("days_since_last_seen", "days_since_last_order", "vip")
NUMERIC += ("consent_whatsapp", "consent_sms", "consent_email")


class TooFewToLearn(ValueError):
    """The segment has too few members, or no one outside it, to learn from."""


@dataclass(frozen=True, slots=True)
class Lookalikes:
    members: int
    candidates: int
    # (user key, probability) of the best-ranked non-members, best first.
    ranked: list[tuple[str, float]]
    # In-sample area under the ROC curve: how well the features tell members apart.
    auc: float
    features: list[str]


def _vocabulary(values: list[list[str]], rows: int) -> list[str]:
    counts = Counter(v for found in values for v in set(found) if v)
    return sorted(v for v, n in counts.items() if n >= max(1, MIN_SHARE * rows))


def _numeric(row: tuple) -> list[float]:
    spend, orders, visits, intent, first, last, last_order, vip, *consents = row[2:13]
    no_order = last_order < 0
    return [
        math.log1p(max(float(spend), 0.0)),
        math.log1p(orders),
        math.log1p(visits),
        float(intent),
        math.log1p(max(float(first), 0.0)),
        math.log1p(max(float(last), 0.0)),
        -1.0 if no_order else math.log1p(max(float(last_order), 0.0)),
        float(vip),
        *(float(c) for c in consents),
    ]


def rank_lookalikes(rows: list[tuple], size: int) -> Lookalikes:
    """The ``size`` non-members most like the members of ``rows``' segment."""
    members = sum(1 for row in rows if row[1])
    candidates = len(rows) - members
    if members < MIN_MEMBERS or candidates == 0:
        raise TooFewToLearn(
            f"a lookalike needs at least {MIN_MEMBERS} members and someone outside the "
            f"segment; it has {members} members of {len(rows)} profiles"
        )
    categories = _vocabulary([list(row[13]) for row in rows], len(rows))
    countries = _vocabulary([[row[14]] for row in rows], len(rows))
    devices = _vocabulary([[row[15]] for row in rows], len(rows))
    features = [
        *NUMERIC,
        *(f"category={c}" for c in categories),
        *(f"country={c}" for c in countries),
        *(f"device={d}" for d in devices),
    ]
    matrix = np.array(
        [
            _numeric(row)
            + [float(c in row[13]) for c in categories]
            + [float(row[14] == c) for c in countries]
            + [float(row[15] == d) for d in devices]
            for row in rows
        ]
    )
    labels = np.array([int(row[1]) for row in rows])
    scaled = StandardScaler().fit_transform(matrix)
    model = LogisticRegression(class_weight="balanced", max_iter=2000)
    model.fit(scaled, labels)
    probability = model.predict_proba(scaled)[:, 1]
    outside = [(row[0], float(p)) for row, p in zip(rows, probability, strict=True) if not row[1]]
    outside.sort(key=lambda found: (-found[1], found[0]))
    return Lookalikes(
        members=members,
        candidates=candidates,
        ranked=outside[:size],
        auc=float(roc_auc_score(labels, probability)),
        features=features,
    )
