# The pattern table reads best one phrasing per line.
# ruff: noqa: E501
"""English phrases to segment rules, deterministically (``POST /v1/segments/parse``).

"customers who spent over 5000 but haven't visited in 30 days" becomes
``{"op": "AND", "rules": [total_spend > 5000, last_seen inactive_days 30]}``.
The phrasings understood are listed in docs/segments.md; each is a pattern
below. The text is cut into clauses at "and", "but", "or" and commas (AND binds
tighter than OR), each clause is matched against the patterns, and whatever
words are left that are not filler ("customers", "who", "have"...) are reported
as not understood: the parser never guesses. Pure.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.segments import Condition, Group

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
}
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}
_COMPARATORS = {
    "over": ">",
    "more than": ">",
    "above": ">",
    "greater than": ">",
    "at least": ">=",
    "no less than": ">=",
    "under": "<",
    "less than": "<",
    "below": "<",
    "fewer than": "<",
    "at most": "<=",
    "no more than": "<=",
    "exactly": "=",
    ">=": ">=",
    "<=": "<=",
    ">": ">",
    "<": "<",
    "=": "=",
}
COUNTRIES = {
    "germany": "DE",
    "france": "FR",
    "india": "IN",
    "spain": "ES",
    "italy": "IT",
    "netherlands": "NL",
    "brazil": "BR",
    "japan": "JP",
    "usa": "US",
    "united states": "US",
    "the united states": "US",
    "uk": "GB",
    "united kingdom": "GB",
    "the uk": "GB",
}
CHANNEL_WORDS = {"whatsapp": "whatsapp", "sms": "sms", "text": "sms", "texts": "sms"}
CHANNEL_WORDS |= {"email": "email", "e-mail": "email"}
# Words that carry no condition of their own.
FILLER = frozenset(
    [
        "customers",
        "customer",
        "users",
        "user",
        "shoppers",
        "shopper",
        "people",
        "buyers",
        "members",
        "clients",
        "visitors",
        "everyone",
        "anyone",
        "who",
        "whose",
        "that",
        "which",
        "have",
        "has",
        "had",
        "are",
        "is",
        "were",
        "was",
        "be",
        "been",
        "being",
        "the",
        "a",
        "an",
        "all",
        "with",
        "and",
        "but",
        "or",
        "of",
        "their",
        "them",
        "they",
        "those",
        "these",
        "show",
        "me",
        "find",
        "list",
        "get",
        "give",
        "some",
        "any",
        "do",
        "does",
        "did",
        "also",
        "still",
        "yet",
        "ever",
        "since",
        "both",
        "either",
        "only",
        "please",
        "segment",
        "audience",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "total",
    ]
)

_CMP = "(" + "|".join(sorted(map(re.escape, _COMPARATORS), key=len, reverse=True)) + ")"
_AMOUNT = (
    r"((?:[$€£₹]\s?)?\d[\d,]*(?:\.\d+)?\s?(?:k|m|thousand|million)?"
    r"(?:\s?(?:dollars|euros|rupees|pounds|usd|eur|inr|gbp))?)"
)
_COUNT = r"(\d+|" + "|".join(_NUMBER_WORDS) + r")"
_NUMBER = _COUNT[1:-1]
_SPAN = rf"(?:the\s+)?(?:last|past)?\s*(?:(?P<n>{_NUMBER})\s+)?(?P<unit>day|week|month|year)s?"
_NEG = r"(?:have not|has not|did not|not|never)"


def _amount(text: str) -> float:
    match = re.match(r"[$€£₹]?\s?(\d[\d,]*(?:\.\d+)?)\s?(k|m|thousand|million)?", text.strip())
    if match is None:
        raise ValueError(text)
    digits = match.group(1)
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", digits):
        digits = digits.replace(",", "")
    number = float(digits.replace(",", "."))
    return number * _SCALE.get(match.group(2) or "", 1)


def _count(text: str | None) -> int:
    if text is None:
        return 1
    return int(text) if text.isdigit() else _NUMBER_WORDS[text]


def _days(count: str | None, unit: str) -> int:
    return _count(count) * _UNIT_DAYS[unit]


def _cmp(word: str) -> str:
    return _COMPARATORS[re.sub(r"\s+", " ", word)]


def _cond(field_name: str, op: str, value: Any) -> Condition:
    return Condition(field=field_name, op=op, value=value)


Builder = Callable[[re.Match[str]], list[Condition]]


def _quantity(field_name: str) -> Builder:
    def build(m: re.Match[str]) -> list[Condition]:
        value = _amount(m.group("n")) if field_name == "total_spend" else _count(m.group("n"))
        return [_cond(field_name, _cmp(m.group("cmp")), value)]

    return build


def _at_least(field_name: str) -> Builder:
    def build(m: re.Match[str]) -> list[Condition]:
        value = _amount(m.group("n")) if field_name == "total_spend" else _count(m.group("n"))
        return [_cond(field_name, ">=" if m.group("dir") in ("more", "+") else "<=", value)]

    return build


def _between(field_name: str) -> Builder:
    def build(m: re.Match[str]) -> list[Condition]:
        convert = _amount if field_name == "total_spend" else _count
        low, high = sorted([convert(m.group("a")), convert(m.group("b"))])
        return [_cond(field_name, "between", [low, high])]

    return build


def _recency(field_name: str, op: str) -> Builder:
    def build(m: re.Match[str]) -> list[Condition]:
        return [_cond(field_name, op, _days(m.group("n"), m.group("unit")))]

    return build


def _fixed(*conditions: tuple[str, str, Any]) -> Builder:
    return lambda m: [_cond(f, o, v) for f, o, v in conditions]


def _group_value(field_name: str, op: str, convert: Callable[[str], Any] = str) -> Builder:
    return lambda m: [_cond(field_name, op, convert(m.group("v")))]


_SPEND = r"(?:spent|spend|spending|spends|total spend(?: of)?|lifetime value(?: of)?|ltv(?: of)?)"
_VISITED = r"(?:visited|been seen|seen|been active|active|shopped|logged in|been back|come back|returned|been here)"
_ORDERED = r"(?:ordered|purchased|bought|placed an order|made a purchase|made an order)"
_WITHIN = r"(?:in|for|within)\s+"

# (pattern, builder), tried in order on each clause; a match's words are consumed.
PATTERNS: list[tuple[re.Pattern[str], Builder]] = [
    (re.compile(p), b)
    for p, b in [
        # money
        (
            rf"{_SPEND}\s+between\s+(?P<a>{_AMOUNT})\s+__to__\s+(?P<b>{_AMOUNT})",
            _between("total_spend"),
        ),
        (
            rf"{_SPEND}\s+(?:of\s+)?(?P<cmp>{_CMP[1:-1]})\s+(?P<n>{_AMOUNT})",
            _quantity("total_spend"),
        ),
        (rf"{_SPEND}\s+(?P<n>{_AMOUNT})\s+__or_(?P<dir>more|less)__", _at_least("total_spend")),
        # recency (before counts: "have not ordered in 30 days" is not "no orders")
        (rf"{_NEG}\s+{_VISITED}\s+{_WITHIN}{_SPAN}", _recency("last_seen", "inactive_days")),
        (
            rf"(?:inactive|dormant|not seen|unseen|away|no visits?)\s+{_WITHIN}{_SPAN}",
            _recency("last_seen", "inactive_days"),
        ),
        (
            rf"{_NEG}\s+{_ORDERED}\s+(?:anything\s+)?{_WITHIN}{_SPAN}",
            _recency("last_order", "inactive_days"),
        ),
        (rf"no (?:orders?|purchases?)\s+{_WITHIN}{_SPAN}", _recency("last_order", "inactive_days")),
        (rf"{_ORDERED}\s+(?:something\s+)?{_WITHIN}{_SPAN}", _recency("last_order", "within_days")),
        (rf"(?:{_VISITED}|seen|visits?)\s+{_WITHIN}{_SPAN}", _recency("last_seen", "within_days")),
        # counts
        (
            r"(?:never (?:ordered|purchased|bought)|no orders|zero orders|without (?:any )?orders?)",
            _fixed(("orders", "=", 0)),
        ),
        (rf"between\s+(?P<a>{_COUNT})\s+__to__\s+(?P<b>{_COUNT})\s+orders?", _between("orders")),
        (rf"(?P<cmp>{_CMP[1:-1]})\s+(?P<n>{_COUNT})\s+(?:orders?|purchases?)", _quantity("orders")),
        (
            rf"(?:ordered|purchased|bought)\s+(?P<cmp>{_CMP[1:-1]})\s+(?P<n>{_COUNT})\s+times?",
            _quantity("orders"),
        ),
        (
            rf"(?P<n>{_COUNT})\s*(?:\+|__or_more__)\s*(?:orders?|purchases?)",
            lambda m: [_cond("orders", ">=", _count(m.group("n")))],
        ),
        (
            rf"(?P<n>{_COUNT})\s+(?:orders?|purchases?)",
            lambda m: [_cond("orders", "=", _count(m.group("n")))],
        ),
        (
            rf"between\s+(?P<a>{_COUNT})\s+__to__\s+(?P<b>{_COUNT})\s+(?:visits?|sessions?)",
            _between("visits"),
        ),
        (rf"(?P<cmp>{_CMP[1:-1]})\s+(?P<n>{_COUNT})\s+(?:visits?|sessions?)", _quantity("visits")),
        (rf"visited\s+(?P<cmp>{_CMP[1:-1]})\s+(?P<n>{_COUNT})\s+times?", _quantity("visits")),
        (
            rf"(?P<n>{_COUNT})\s*(?:\+|__or_more__)\s*(?:visits?|sessions?)",
            lambda m: [_cond("visits", ">=", _count(m.group("n")))],
        ),
        # intent
        (
            rf"intent(?:\s+score)?\s+(?:of\s+)?(?P<cmp>{_CMP[1:-1]})\s+(?P<n>\d+(?:\.\d+)?)",
            lambda m: [_cond("intent_score", _cmp(m.group("cmp")), float(m.group("n")))],
        ),
        # tiers
        (r"(?:non-vips?|not vips?|standard(?: tier)?)\b", _fixed(("tier", "=", "standard"))),
        (r"\bvips?\b(?: tier)?", _fixed(("tier", "=", "vip"))),
        # channels
        (
            r"(?:reachable|contactable)?\s*(?:on|via|by|through|over|opted in to|opted into|consented to|subscribed to)\s+(?P<v>whatsapp|sms|texts?|e-?mail)(?:\s+(?:consent|opt-?in))?",
            lambda m: [_cond("channels", "contains", CHANNEL_WORDS[m.group("v")])],
        ),
        (
            r"(?:with\s+)?(?P<v>whatsapp|sms|e-?mail)\s+(?:consent|opt-?ins?|subscribers?)",
            lambda m: [_cond("channels", "contains", CHANNEL_WORDS[m.group("v")])],
        ),
        # devices
        (
            r"(?:on|using|uses|use|via|from)\s+(?:a\s+)?(?P<v>mobile|desktop|tablet)(?:\s+devices?)?",
            _group_value("device", "="),
        ),
        (
            r"(?P<v>mobile|desktop|tablet)\s+(?:users|shoppers|customers|visitors|buyers)",
            _group_value("device", "="),
        ),
        # countries
        (
            r"(?:from|in|based in|living in|located in)\s+(?P<v>"
            + "|".join(sorted(COUNTRIES, key=len, reverse=True))
            + r")\b",
            lambda m: [_cond("country", "=", COUNTRIES[m.group("v")])],
        ),
        (r"(?:from|country)\s+(?P<v>[a-z]{2})\b", _group_value("country", "=", str.upper)),
        # categories: one word, or a quoted phrase
        (
            r"(?:interested in|who like|likes?|into|fans? of|bought|buying|shop(?:ped|s)? for|browsed|browsing|viewed|in (?:the )?category|category|categories)\s+(?:\"(?P<q>[^\"]+)\"|(?P<w>[a-z][a-z0-9_-]*))",
            lambda m: [_cond("top_categories", "contains", m.group("q") or m.group("w"))],
        ),
    ]
]


@dataclass
class ParsedPhrase:
    rule: Group | None
    # Words neither matched by a pattern nor filler, in order: nothing was guessed.
    unknown: list[str] = field(default_factory=list)
    # How each clause was read (clause text → conditions), for the caller to show.
    clauses: list[tuple[str, list[Condition]]] = field(default_factory=list)


def _normalise(text: str) -> str:
    text = text.replace("’", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"\b(have|has|did|do|does|is|are|was|were)n't\b", r"\1 not", text.lower())
    text = re.sub(r"\bhaven't\b|\bhavent\b", "have not", text)
    text = re.sub(r"\bhasn't\b|\bhasnt\b", "has not", text)
    text = re.sub(r"\bdidn't\b|\bdidnt\b", "did not", text)
    text = re.sub(
        r"\bor (more|less|fewer|above|below)\b(?!\s+than)", lambda m: f"__or_{_dir(m)}__", text
    )
    amount = rf"(?:{_AMOUNT}|{_COUNT})"
    text = re.sub(
        rf"between\s+(?P<a>{amount})\s+and\s+(?P<b>{amount})", r"between \g<a> __to__ \g<b>", text
    )
    return re.sub(r"\s+", " ", text).strip()


def _dir(m: re.Match[str]) -> str:
    return "more" if m.group(1) in ("more", "above") else "less"


def _split(text: str) -> list[tuple[str, str]]:
    """(connector before the clause, clause); the first connector is AND."""
    parts = re.split(r"\s*(?:,|;)?\s*\b(and|but|or)\b\s*|\s*(?:,(?!\d)|;)\s*", text)
    clauses: list[tuple[str, str]] = []
    connector = "AND"
    for i, part in enumerate(parts):
        if part is None:
            continue
        if i % 2 == 1:
            connector = "OR" if part == "or" else "AND"
            continue
        if part.strip():
            clauses.append((connector, part.strip()))
            connector = "AND"
    return clauses


def _read_clause(clause: str) -> tuple[list[Condition], list[str]]:
    found: list[Condition] = []
    refused: list[str] = []
    rest = f" {clause} "
    for pattern, build in PATTERNS:
        while True:
            match = pattern.search(rest)
            if match is None or not match.group(0).strip():
                break
            try:
                found.extend(build(match))
            except (ValueError, KeyError):  # pydantic's ValidationError is a ValueError
                # Read, but not a value a rule may hold ("inactive for 10^30 days"): its
                # words are reported as not understood, never a crash.
                refused.extend(re.findall(r"[^\s,.;:!?()]+", match.group(0)))
            rest = rest[: match.start()] + " " + rest[match.end() :]
    words = re.findall(r"[^\s,.;:!?()]+", rest)
    return found, refused + [w for w in words if w not in FILLER]


def parse_phrase(text: str) -> ParsedPhrase:
    """The rule a phrase describes, or the words it could not read (and no rule)."""
    clauses = _split(_normalise(text))
    unknown: list[str] = []
    read: list[tuple[str, str, list[Condition]]] = []
    for connector, clause in clauses:
        conditions, leftover = _read_clause(clause)
        unknown.extend(w for w in leftover if w not in unknown)
        if conditions:
            read.append((connector, clause, conditions))
        elif connector == "OR" and read:
            # "a or customers": an OR with nothing readable is not silently dropped.
            unknown.append("or")
    shown = [(clause, conditions) for _, clause, conditions in read]
    if unknown or not read:
        return ParsedPhrase(None, unknown or [text.strip()[:64]], shown)
    # AND binds tighter than OR: split at the ORs, AND within each part.
    alternatives: list[list[Condition]] = []
    for connector, _, conditions in read:
        if connector == "OR" or not alternatives:
            alternatives.append([])
        alternatives[-1].extend(conditions)
    if len(alternatives) == 1:
        return ParsedPhrase(Group(op="AND", rules=list(alternatives[0])), [], shown)
    options = [
        part[0] if len(part) == 1 else Group(op="AND", rules=list(part)) for part in alternatives
    ]
    rule = Group(op="OR", rules=options)
    return ParsedPhrase(rule, [], shown)
