"""Rules: the validated, versioned configuration of scoring, nudges and suppression.

A rules file (YAML, or TOML by its suffix) is named by INTENTFLOW_RULES; the
package ships ``default_rules.yaml``. ``Rules`` is a frozen pydantic model; the
fold reads ``rules.plan``, the same values flattened into integer milliseconds
and milli-points once, so the hot path does no unit conversion.
"""

import math
import tomllib
from dataclasses import dataclass
from datetime import time
from functools import cached_property, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.domain.signals import SIGNAL_CODES
from schemas.variants import TemplateName, TemplateVariant

DEFAULT_RULES_FILE = "default_rules.yaml"
# Score points are stored as integer thousandths: exact to serialize and compare.
MILLI = 1000

Seconds = Annotated[int, Field(ge=1, le=365 * 86_400)]
Points = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
PositivePoints = Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class RulesError(ValueError):
    """A rules file that cannot be used, with its path and every reason."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class HalfLives(_Section):
    user: Seconds = 3600
    product: Seconds = 1800
    category: Seconds = 7200


class SpecLinger(_Section):
    per_second: Points = 0.25
    max: Points = 4.0
    min_dwell_ms: Annotated[int, Field(ge=0)] = 2000


class Scoring(_Section):
    half_life_s: HalfLives = HalfLives()
    cap: PositivePoints = 50.0
    weights: dict[str, Points] = Field(default_factory=dict)
    spec_linger: SpecLinger = SpecLinger()
    focus_window_s: Seconds = 600
    max_products: Annotated[int, Field(ge=1, le=256)] = 12
    max_categories: Annotated[int, Field(ge=0, le=256)] = 4
    top_signals: Annotated[int, Field(ge=1, le=len(SIGNAL_CODES))] = 3

    @field_validator("weights")
    @classmethod
    def _known_signals(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(SIGNAL_CODES) | ({"spec_linger"} & set(weights)))
        if unknown:
            raise ValueError(
                f"unknown signal(s) {unknown}; known: {sorted(set(SIGNAL_CODES) - {'spec_linger'})}"
                " (spec_linger is weighted by dwell under scoring.spec_linger)"
            )
        return weights


class SendTime(_Section):
    """When a high-intent nudge goes out (docs/dispatch.md, "Send time: the best hour").

    ``as_decided`` (the default): at once, as ever. ``best_hour``: held until the next
    start of the shopper's best local hour, learned from their reads and clicks
    (pipeline/campaigns/best_hour.py, over recorded snapshots), when that comes within
    ``max_delay_s`` of the decision; else sent as decided. A ``control_share`` of
    shoppers (a stable hash) get a random hour instead, so the effect is measured.
    Cart rescues have no such setting: they are time-critical.
    """

    mode: Literal["as_decided", "best_hour"] = "as_decided"
    max_delay_s: Annotated[int, Field(ge=0, le=86_400)] = 43_200
    control_share: Annotated[float, Field(ge=0, le=1)] = 0.2


class HighIntent(_Section):
    threshold: PositivePoints = 8.0
    hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.3
    cooldown_s: Seconds = 86_400
    user_cooldown_s: Annotated[int, Field(ge=0, le=365 * 86_400)] = 3600
    discount_percent: Percent = 10
    skip_products_in_cart: bool = True
    send_time: SendTime = SendTime()


class CartRescue(_Section):
    timeout_s: Seconds = 1800
    checkout_timeout_s: Seconds = 3600
    exit_intent_grace_s: Seconds = 120
    discount_percent: Percent = 10
    max_items: Annotated[int, Field(ge=1, le=500)] = 20

    @model_validator(mode="after")
    def _grace_is_shorter(self) -> "CartRescue":
        if self.exit_intent_grace_s > self.timeout_s:
            raise ValueError("exit_intent_grace_s must not exceed timeout_s")
        return self


class Vip(_Section):
    order_count: Annotated[int, Field(ge=1, le=1000)] = 3
    discount_percent: Percent = 15
    token_ttl_s: Seconds = 30 * 86_400


class QuietHours(_Section):
    start: ClockTime
    end: ClockTime
    max_hold_s: Seconds = 43_200

    @model_validator(mode="after")
    def _not_empty(self) -> "QuietHours":
        if self.start == self.end:
            raise ValueError("start and end are equal; omit quiet_hours to disable them")
        return self


class Suppression(_Section):
    frequency_cap_per_day: Annotated[int, Field(ge=0, le=1000)] = 2
    quiet_hours: QuietHours | None = None
    default_timezone: str = "UTC"
    holdout_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    experiment_salt: Annotated[str, StringConstraints(min_length=1, max_length=256)]

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}") from None
        return name


class MaxAges(_Section):
    """How old a decision's trigger may be when it is sent, per message kind.

    A nudge's age includes the night the engine held it: its maximum age must cover the
    quiet hours' maximum hold (checked in ``Rules``), or every held nudge would expire.
    """

    cart_rescue: Seconds = 57_600
    high_intent: Seconds = 57_600
    vip_upgrade: Seconds = 604_800
    campaign: Seconds = 86_400


# What a WhatsApp template's parameters and a free-form message may be filled with.
Placeholder = Literal["name", "product", "image", "price", "discount", "cta"]


class WhatsAppTemplate(_Section):
    """A template as approved in the WhatsApp Business account (Meta's template API).

    Business-initiated messages outside the 24-hour service window must be one. The
    body's ``{{1}}``…``{{n}}`` are filled, in order, from ``body``'s placeholders; the
    header is the product's image; the URL button's dynamic suffix is the tracked
    link's token (its approved URL ends with ``/v1/r/{{1}}`` on our API).
    """

    name: TemplateName
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")] = "en_US"
    category: Literal["MARKETING", "UTILITY"] = "MARKETING"
    header_image: bool = True
    body: tuple[Placeholder, ...] = ("product", "discount")
    link_button: bool = True
    # Message variants a bandit learns among (nudge kinds only; none: the message above).
    variants: tuple[TemplateVariant, ...] = ()
    # What counts as a variant's success: a click on its link, or an order from it.
    success: Literal["click", "conversion"] = "click"

    @field_validator("variants")
    @classmethod
    def _distinct_variants(
        cls, variants: tuple[TemplateVariant, ...]
    ) -> tuple[TemplateVariant, ...]:
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        if len(variants) == 1:
            raise ValueError("one variant is no choice: list two or more, or none")
        return variants

    def variant(self, name: str | None) -> "TemplateVariant | None":
        return next((v for v in self.variants if v.name == name), None)


class Templates(_Section):
    cart_rescue: WhatsAppTemplate = WhatsAppTemplate(
        name="intentflow_cart_rescue", body=("name", "product", "discount")
    )
    high_intent: WhatsAppTemplate = WhatsAppTemplate(
        name="intentflow_high_intent", body=("name", "product", "discount")
    )
    vip_upgrade: WhatsAppTemplate = WhatsAppTemplate(
        name="intentflow_vip_upgrade", header_image=False, body=("name", "discount")
    )
    campaign: WhatsAppTemplate = WhatsAppTemplate(
        name="intentflow_campaign", body=("product", "discount")
    )

    @model_validator(mode="after")
    def _variants_on_nudges_only(self) -> "Templates":
        for kind in ("vip_upgrade", "campaign"):
            if getattr(self, kind).variants:
                raise ValueError(f"{kind}: variants are for nudge kinds (cart_rescue, high_intent)")
        return self


Channel = Literal["whatsapp", "sms"]
ChannelOrder = Annotated[tuple[Channel, ...], Field(min_length=1, max_length=2)]
CallingCode = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,2}$")]


class ChannelPlan(_Section):
    """Which channels, in which order, per destination country (E.164 calling code).

    For example Meta does not deliver WhatsApp marketing templates to US numbers:
    ``by_calling_code: {"1": [sms]}`` sends those shoppers SMS only.
    """

    default: ChannelOrder = ("whatsapp", "sms")
    by_calling_code: dict[CallingCode, ChannelOrder] = {}

    @field_validator("default", "by_calling_code")
    @classmethod
    def _no_repeats(cls, value: Any) -> Any:
        orders = value.values() if isinstance(value, dict) else [value]
        for order in orders:
            if len(set(order)) != len(order):
                raise ValueError(f"a channel is listed twice in {list(order)}")
        return value


Price = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
PriceByCountry = dict[CallingCode | Literal["default"], Price]


class RateCard(_Section):
    """What one message costs, per channel and category, by destination calling code
    (``default`` for the rest), in ``currency``: pipeline/dispatch/pricing.py.

    The defaults are examples in the range of the providers' list prices; set the
    prices of your own contract. Meta bills a WhatsApp template by its category;
    a free-form reply inside the 24-hour service window is free. SMS is per segment.
    """

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    whatsapp_marketing: PriceByCountry = {"default": 0.0625, "1": 0.025, "44": 0.0529}
    whatsapp_utility: PriceByCountry = {"default": 0.008, "1": 0.004, "44": 0.022}
    whatsapp_service: PriceByCountry = {"default": 0.0}
    sms: PriceByCountry = {"default": 0.05, "1": 0.0083, "44": 0.0463}

    @field_validator("whatsapp_marketing", "whatsapp_utility", "whatsapp_service", "sms")
    @classmethod
    def _has_default(cls, prices: dict[str, float]) -> dict[str, float]:
        if "default" not in prices:
            raise ValueError("needs a 'default' price for the countries not listed")
        return prices


class Dispatch(_Section):
    """Send-time checks the dispatcher applies (pipeline/dispatch/policy.py), the
    channels per country, and the WhatsApp templates it sends outside the service window."""

    max_age_s: MaxAges = MaxAges()
    templates: Templates = Templates()
    channel_plan: ChannelPlan = ChannelPlan()
    rate_card: RateCard = RateCard()


class Dedup(_Section):
    window_s: Seconds = 3600
    max_ids: Annotated[int, Field(ge=1, le=1024)] = 12

    @field_validator("window_s")
    @classmethod
    def _fits_state(cls, window_s: int) -> int:
        # The state stores remembered event times as 32-bit millisecond offsets.
        if window_s * 1000 >= 2**32:
            raise ValueError("window_s must be under 49 days")
        return window_s


class Rules(_Section):
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    scoring: Scoring = Scoring()
    high_intent: HighIntent = HighIntent()
    cart_rescue: CartRescue = CartRescue()
    vip: Vip = Vip()
    suppression: Suppression
    dedup: Dedup = Dedup()
    dispatch: Dispatch = Dispatch()

    @model_validator(mode="after")
    def _ages_cover_the_hold(self) -> "Rules":
        quiet = self.suppression.quiet_hours
        if quiet is None:
            return self
        for kind in ("cart_rescue", "high_intent"):
            age = getattr(self.dispatch.max_age_s, kind)
            if age < quiet.max_hold_s:
                raise ValueError(
                    f"dispatch.max_age_s.{kind} ({age}) is shorter than"
                    f" suppression.quiet_hours.max_hold_s ({quiet.max_hold_s}):"
                    " every nudge held through quiet hours would expire"
                )
        return self

    @model_validator(mode="after")
    def _send_time_delay_within_age(self) -> "Rules":
        delay, age = self.high_intent.send_time.max_delay_s, self.dispatch.max_age_s.high_intent
        if self.high_intent.send_time.mode == "best_hour" and delay >= age:
            raise ValueError(
                f"high_intent.send_time.max_delay_s ({delay}) must be shorter than"
                f" dispatch.max_age_s.high_intent ({age}): a nudge held for its best hour"
                " would expire waiting"
            )
        return self

    @cached_property
    def plan(self) -> "Plan":
        return Plan.of(self)


@dataclass(frozen=True, slots=True)
class Plan:
    """The rules in the units the fold works in: ms, milli-points, decay rates."""

    version: str
    weights: dict[str, int]  # event name -> milli-points
    signals: dict[str, tuple[str, int]]  # event name -> (signal code, milli-points)
    linger_per_ms: float  # milli-points per millisecond of dwell
    linger_max: int
    linger_min_ms: int
    decay_user: float  # ln 2 / half-life in ms
    decay_product: float
    decay_category: float
    cap: int
    focus_window_ms: int
    max_products: int
    max_categories: int
    top_signals: int
    hi_threshold: int
    hi_rearm: int
    hi_cooldown_ms: int
    hi_user_cooldown_ms: int
    hi_discount: float
    hi_skip_in_cart: bool
    hi_max_age_ms: int  # how long the dispatcher may still send a high-intent nudge
    cart_timeout_ms: int
    checkout_timeout_ms: int
    exit_grace_ms: int
    cart_discount: float
    cart_max_items: int
    vip_orders: int
    vip_discount: float
    vip_ttl_ms: int
    cap_per_day: int
    quiet_start: time | None
    quiet_end: time | None
    max_hold_ms: int
    default_timezone: str
    holdout_share: float
    salt: str
    dedup_window_ms: int
    dedup_max_ids: int

    @classmethod
    def of(cls, rules: Rules) -> "Plan":
        s, hi, cart, q = rules.scoring, rules.high_intent, rules.cart_rescue, rules.suppression
        quiet = q.quiet_hours
        return cls(
            version=rules.version,
            weights={name: round(w * MILLI) for name, w in s.weights.items() if w > 0},
            signals={
                name: (SIGNAL_CODES[name], round(w * MILLI))
                for name, w in s.weights.items()
                if w > 0
            },
            linger_per_ms=s.spec_linger.per_second,
            linger_max=round(s.spec_linger.max * MILLI),
            linger_min_ms=s.spec_linger.min_dwell_ms,
            decay_user=math.log(2) / (s.half_life_s.user * 1000),
            decay_product=math.log(2) / (s.half_life_s.product * 1000),
            decay_category=math.log(2) / (s.half_life_s.category * 1000),
            cap=round(s.cap * MILLI),
            focus_window_ms=s.focus_window_s * 1000,
            max_products=s.max_products,
            max_categories=s.max_categories,
            top_signals=s.top_signals,
            hi_threshold=round(hi.threshold * MILLI),
            hi_rearm=round(hi.threshold * (1 - hi.hysteresis) * MILLI),
            hi_cooldown_ms=hi.cooldown_s * 1000,
            hi_user_cooldown_ms=hi.user_cooldown_s * 1000,
            hi_discount=hi.discount_percent,
            hi_skip_in_cart=hi.skip_products_in_cart,
            hi_max_age_ms=rules.dispatch.max_age_s.high_intent * 1000,
            cart_timeout_ms=cart.timeout_s * 1000,
            checkout_timeout_ms=cart.checkout_timeout_s * 1000,
            exit_grace_ms=cart.exit_intent_grace_s * 1000,
            cart_discount=cart.discount_percent,
            cart_max_items=cart.max_items,
            vip_orders=rules.vip.order_count,
            vip_discount=rules.vip.discount_percent,
            vip_ttl_ms=rules.vip.token_ttl_s * 1000,
            cap_per_day=q.frequency_cap_per_day,
            quiet_start=time.fromisoformat(quiet.start) if quiet else None,
            quiet_end=time.fromisoformat(quiet.end) if quiet else None,
            max_hold_ms=quiet.max_hold_s * 1000 if quiet else 0,
            default_timezone=q.default_timezone,
            holdout_share=q.holdout_share,
            salt=q.experiment_salt,
            dedup_window_ms=rules.dedup.window_s * 1000,
            dedup_max_ids=rules.dedup.max_ids,
        )


def parse_rules(raw: Any, *, source: str) -> Rules:
    """Validate an already-read rules mapping; ``source`` names it in errors."""
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: a rules file must be a mapping at the top level")
    try:
        return Rules.model_validate(raw)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise RulesError(f"{source}: {reasons}") from None


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules file (``.toml`` as TOML, else YAML); raises ``RulesError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    return parse_rules(raw, source=str(path))


@lru_cache(maxsize=1)
def default_rules() -> Rules:
    """The rules shipped in the package."""
    resource = files("pipeline.domain").joinpath(DEFAULT_RULES_FILE)
    return parse_rules(yaml.safe_load(resource.read_text(encoding="utf-8")), source=str(resource))


def rules_from(path: str | Path | None) -> Rules:
    """The rules a deployable runs with: the file named by settings.rules, else the default."""
    return load_rules(path) if path is not None else default_rules()
