"""Segment rules: a JSON tree of groups and conditions over profile fields, and its SQL.

A rule is a group ``{"op": "AND"|"OR", "rules": [...]}`` of conditions
``{"field": ..., "op": ..., "value": ...}`` and nested groups. Fields come from
``FIELDS`` (a whitelist, each with a type); the type decides which operators
and values are valid. ``compile_rule`` turns a validated tree into a
ClickHouse condition over the ``profiles`` view (migration 0100): identifiers
only from the whitelist, every value a bound parameter. Pure: no I/O.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from schemas.time import epoch_ms

FieldType = Literal["number", "count", "string", "enum", "bool", "datetime", "array"]
Operator = Literal[
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "in",
    "not_in",
    "contains",
    "between",
    "inactive_days",
    "within_days",
]

DAY_MS = 86_400_000
MAX_DEPTH = 6
MAX_CONDITIONS = 64
MAX_LIST = 1000
MAX_TEXT = 256
MAX_DAYS = 36_500
CHANNEL_NAMES = ("whatsapp", "sms", "email")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    type: FieldType
    description: str
    # Allowed values of an enum field (and of an array field's elements, when closed).
    choices: tuple[str, ...] = ()


# The profile columns a rule may name (the ``profiles`` view, migration 0100).
FIELDS: dict[str, FieldSpec] = {
    "total_spend": FieldSpec("number", "sum of the user's order totals (each order once)"),
    "orders": FieldSpec("count", "distinct orders placed"),
    "visits": FieldSpec("count", "distinct sessions"),
    "intent_score": FieldSpec("number", "the engine's score on its latest decision (0: none)"),
    "first_seen": FieldSpec("datetime", "time of the user's first event"),
    "last_seen": FieldSpec("datetime", "time of the user's latest event"),
    "last_order": FieldSpec("datetime", "time of the latest order; null if none"),
    "top_categories": FieldSpec("array", "up to 3 categories the user interacted with most"),
    "tier": FieldSpec("enum", "vip once the engine upgraded the user", ("vip", "standard")),
    "channels": FieldSpec("array", "channels the user may be messaged on", CHANNEL_NAMES),
    "consent_whatsapp": FieldSpec("bool", "WhatsApp marketing consent and a phone known"),
    "consent_sms": FieldSpec("bool", "SMS marketing consent and a phone known"),
    "consent_email": FieldSpec("bool", "e-mail marketing consent granted"),
    "country": FieldSpec("string", "country of the latest event that had one"),
    "device": FieldSpec("string", "device of the latest event that had one"),
    "user_key": FieldSpec("string", "user id (or anonymous id when never identified)"),
}

OPERATORS: dict[FieldType, frozenset[str]] = {
    "number": frozenset({"=", "!=", ">", ">=", "<", "<=", "in", "not_in", "between"}),
    "count": frozenset({"=", "!=", ">", ">=", "<", "<=", "in", "not_in", "between"}),
    "string": frozenset({"=", "!=", "in", "not_in", "contains"}),
    "enum": frozenset({"=", "!=", "in", "not_in"}),
    "bool": frozenset({"=", "!="}),
    "datetime": frozenset({">", ">=", "<", "<=", "between", "inactive_days", "within_days"}),
    "array": frozenset({"contains", "in", "not_in"}),
}

FieldName = Literal[tuple(FIELDS)]  # type: ignore[valid-type]
_TIME = TypeAdapter(AwareDatetime)


def _number(value: Any, integral: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    # An int is compared as an int: math.isfinite(10**400) raises OverflowError.
    out_of_range = abs(value) > 10**15 if isinstance(value, int) else not math.isfinite(value)
    if out_of_range or abs(value) > 1e15:
        raise ValueError("must be a finite number of at most 1e15")
    if integral:
        if value != int(value):
            raise ValueError("must be a whole number")
        return int(value)
    return float(value)


def _text(value: Any, choices: tuple[str, ...] = (), least: int = 0) -> str:
    # "" is a value: country = "" selects profiles whose country is unknown.
    if not isinstance(value, str) or not least <= len(value) <= MAX_TEXT:
        raise ValueError(f"must be a string of {least} to {MAX_TEXT} characters")
    if choices and value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}")
    return value


def _epoch_ms(value: Any) -> int:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO-8601 time with a zone, e.g. 2024-05-01T00:00:00Z")
    try:
        moment = _TIME.validate_python(value)
    except ValidationError:
        raise ValueError(
            "must be an ISO-8601 time with a zone, e.g. 2024-05-01T00:00:00Z"
        ) from None
    return epoch_ms(moment)


def _days(value: Any) -> int:
    days = _number(value, integral=True)
    if not 0 <= days <= MAX_DAYS:
        raise ValueError(f"must be a whole number of days, 0 to {MAX_DAYS}")
    return int(days)


def _scalar(spec: FieldSpec, value: Any) -> Any:
    """One value of the field's type, normalised (times become epoch ms)."""
    if spec.type in ("number", "count"):
        return _number(value, integral=spec.type == "count")
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if spec.type == "datetime":
        return _epoch_ms(value)
    return _text(value, spec.choices)


def normalise(spec: FieldSpec, op: str, value: Any) -> Any:
    """The value checked against the field's type and the operator; raises ValueError."""
    if op not in OPERATORS[spec.type]:
        allowed = ", ".join(sorted(OPERATORS[spec.type]))
        raise ValueError(f"operator {op!r} does not apply to a {spec.type} field ({allowed})")
    if op in ("inactive_days", "within_days"):
        return _days(value)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise ValueError(f"must be a list of 1 to {MAX_LIST} values")
        return [_scalar(spec, item) for item in value]
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("must be a list of two values [low, high]")
        low, high = (_scalar(spec, item) for item in value)
        if low > high:
            raise ValueError("low must not be above high")
        return [low, high]
    if op == "contains" and spec.type in ("string", "array"):
        return _text(value, spec.choices, least=1)
    return _scalar(spec, value)


class Condition(BaseModel):
    """``field op value``: e.g. ``{"field": "total_spend", "op": ">", "value": 5000}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: FieldName
    op: Operator
    value: Any

    @model_validator(mode="after")
    def _typed(self) -> "Condition":
        normalise(FIELDS[self.field], self.op, self.value)
        return self


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "group" if "rules" in value else "condition"
    return "group" if isinstance(value, Group) else "condition"


Rule = Annotated[
    Annotated["Group", Tag("group")] | Annotated[Condition, Tag("condition")],
    Discriminator(_kind),
]


class Group(BaseModel):
    """``{"op": "AND"|"OR", "rules": [...]}``: all (AND) or any (OR) of its rules hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["AND", "OR"]
    rules: Annotated[list[Rule], Field(min_length=1, max_length=MAX_CONDITIONS)]

    @model_validator(mode="after")
    def _bounded(self) -> "Group":
        if depth(self) > MAX_DEPTH:
            raise ValueError(f"groups nest at most {MAX_DEPTH} deep")
        if len(conditions(self)) > MAX_CONDITIONS:
            raise ValueError(f"at most {MAX_CONDITIONS} conditions in a rule")
        return self


def depth(rule: "Group | Condition") -> int:
    if isinstance(rule, Condition):
        return 0
    return 1 + max(depth(r) for r in rule.rules)


def conditions(rule: "Group | Condition") -> list[Condition]:
    if isinstance(rule, Condition):
        return [rule]
    return [c for r in rule.rules for c in conditions(r)]


# --- SQL ------------------------------------------------------------------------------

_COMPARE = {"=": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_CH_TYPE = {"number": "Float64", "count": "Int64", "string": "String", "enum": "String"}
_CH_TYPE |= {"bool": "UInt8", "datetime": "Int64", "array": "String"}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A condition over the ``profiles`` view and its bound parameters."""

    sql: str
    params: dict[str, Any]


class _Compiler:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, ch_type: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = int(value) if ch_type == "UInt8" else value
        return f"{{{name}:{ch_type}}}"

    def time(self, epoch_ms: int) -> str:
        return f"fromUnixTimestamp64Milli({self.bind(epoch_ms, 'Int64')}, 'UTC')"

    def rule(self, rule: Group | Condition) -> str:
        if isinstance(rule, Group):
            joined = f" {rule.op} ".join(self.rule(r) for r in rule.rules)
            return f"({joined})"
        return self.condition(rule)

    def condition(self, c: Condition) -> str:
        spec = FIELDS[c.field]
        column = c.field  # a whitelisted name (FieldName), never free text
        value = normalise(spec, c.op, c.value)
        ch_type = _CH_TYPE[spec.type]
        if spec.type == "datetime":
            return self.time_condition(column, c.op, value)
        if spec.type == "array":
            if c.op == "contains":
                return f"has({column}, {self.bind(value, 'String')})"
            found = f"hasAny({column}, {self.bind(value, 'Array(String)')})"
            return found if c.op == "in" else f"NOT {found}"
        if c.op in _COMPARE:
            return f"{column} {_COMPARE[c.op]} {self.bind(value, ch_type)}"
        if c.op in ("in", "not_in"):
            negate = "NOT " if c.op == "not_in" else ""
            return f"{column} {negate}IN {self.bind(value, f'Array({ch_type})')}"
        if c.op == "between":
            low, high = value
            return f"{column} BETWEEN {self.bind(low, ch_type)} AND {self.bind(high, ch_type)}"
        # contains on a string: a substring, case-sensitive.
        return f"position({column}, {self.bind(value, 'String')}) > 0"

    def time_condition(self, column: str, op: str, value: Any) -> str:
        if op == "inactive_days":
            # Never (null) counts as inactive: "no order in 30 days" includes "no order ever".
            cutoff = self.time(self.now_ms - value * DAY_MS)
            return f"({column} IS NULL OR {column} < {cutoff})"
        if op == "within_days":
            return f"{column} >= {self.time(self.now_ms - value * DAY_MS)}"
        if op == "between":
            low, high = value
            return f"{column} BETWEEN {self.time(low)} AND {self.time(high)}"
        return f"{column} {_COMPARE[op]} {self.time(value)}"


def compile_rule(rule: Group, now_ms: int) -> CompiledRule:
    """The rule as a ClickHouse condition; ``now_ms`` anchors inactive_days/within_days."""
    compiler = _Compiler(now_ms)
    sql = compiler.rule(rule)
    return CompiledRule(sql, compiler.params)


RULE = TypeAdapter(Group)


def load_rule(data: Any) -> Group:
    """A rule tree from JSON data (dict) or text; raises ``pydantic.ValidationError``."""
    if isinstance(data, str | bytes):
        return RULE.validate_json(data)
    return RULE.validate_python(data)
