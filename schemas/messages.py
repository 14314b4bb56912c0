"""Decisions the score agent publishes: nudges, their cancellations and VIP upgrades.

The contract shared by the domain fold (which makes them), the dispatcher
(which sends or drops them) and the warehouse sink (which records every one,
suppressed ones included). One ``Nudge`` per ``nudge_id``: a nudge held for quiet
hours is published once, when its fate is known, so dedup by id never hides
an outcome. The hold itself is announced at once by a ``NudgeHeld`` (when it was
held and until when; its own table, ``nudge_holds``), so it is visible before the
final record; the dispatcher only audits it.

Topics: ``Nudge``, ``NudgeHeld``, ``NudgeCancellation`` and ``CampaignMessage`` go to ``nudges``;
``VipUpgrade`` goes to ``vip``. ``load_decision`` reads any of them back by its ``type``.
"""

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

Channel = Literal["whatsapp", "sms", "email"]
NudgeKind = Literal["cart_rescue", "high_intent"]
NudgeStatus = Literal["emit", "suppressed"]
SuppressionReason = Literal[
    "no_consent",
    "frequency_cap",
    "quiet_hours_stale",
    "holdout",
    # A nudge held for quiet hours whose cart was resolved before release.
    "order_placed",
    "cart_emptied",
]
# Every reason, in the order reports list them (api/queries/nudges.py, the dashboards).
SUPPRESSION_REASONS: tuple[SuppressionReason, ...] = get_args(SuppressionReason)
CancellationReason = Literal["order_placed", "cart_emptied"]
# Who made a decision: the engine's rules, or an admin, through a flow they started or
# a send they forced past the daily cap and quiet hours (consent is still required).
DecisionOrigin = Literal["engine", "admin_flow", "admin_force"]
# Admin decisions follow no rules: these rules versions label them in reports, and a
# replay tells a force-send (never held, never aimed at a best hour) by its own. What the
# dispatcher acts on (a force-send passes the daily cap) is the decision's origin.
FORCED_RULES_VERSION = "admin:force"
FLOW_RULES_VERSION = "admin:flow"

NudgeId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
# (signal name, contribution in score points), largest first.
Signals = tuple[tuple[str, float], ...]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


class CartItem(_Message):
    product_id: str
    quantity: Annotated[int, Field(ge=1)]
    price: Annotated[float, Field(ge=0)]


class Nudge(_Message):
    """One decision to message a shopper, whether it is sent or not."""

    type: Literal["nudge"] = "nudge"
    nudge_id: NudgeId
    kind: NudgeKind
    user_key: str
    user_id: str | None = None
    anonymous_id: str | None = None
    status: NudgeStatus
    reason: SuppressionReason | None = None
    # When the rule fired (event time); decided_at differs only for nudges held
    # through quiet hours, and is when the hold ended.
    triggered_at: AwareDatetime
    decided_at: AwareDatetime
    product_id: str | None = None
    cart_id: str | None = None
    items: tuple[CartItem, ...] = ()
    discount_percent: Percent
    # Consented channels that can be delivered (a phone is known for whatsapp/sms).
    channels: tuple[Channel, ...] = ()
    score: float
    signals: Signals = ()
    rules_version: str
    trigger_event_id: str
    origin: DecisionOrigin = "engine"
    # The shopper's IANA zone as the engine knew it (quiet hours at send time); None when
    # unknown: the dispatcher then uses the rules' default zone.
    timezone: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Nudge":
        if (self.status == "suppressed") != (self.reason is not None):
            raise ValueError("a suppressed nudge needs a reason, an emitted one has none")
        if self.kind == "cart_rescue" and not (self.items and self.cart_id):
            raise ValueError("a cart_rescue nudge needs its cart_id and items")
        if self.kind == "high_intent" and not self.product_id:
            raise ValueError("a high_intent nudge needs its product_id")
        return self


HoldReason = Literal["quiet_hours"]


class NudgeHeld(_Message):
    """The engine holds a triggered nudge (quiet hours): the final ``Nudge`` follows later
    under the same id, released, suppressed or withdrawn. Recorded, never sent."""

    type: Literal["nudge_held"] = "nudge_held"
    nudge_id: NudgeId
    kind: NudgeKind
    user_key: str
    reason: HoldReason = "quiet_hours"
    held_at: AwareDatetime
    # When the hold ends: the quiet hours' end, or earlier if that is past the maximum hold.
    release_at: AwareDatetime
    rules_version: str
    trigger_event_id: str


class NudgeCancellation(_Message):
    """Withdraws an emitted nudge: the dispatcher drops it if not yet sent."""

    type: Literal["nudge_cancellation"] = "nudge_cancellation"
    nudge_id: NudgeId
    kind: NudgeKind
    user_key: str
    reason: CancellationReason
    at: AwareDatetime
    rules_version: str
    trigger_event_id: str


class VipUpgrade(_Message):
    """The claims of a single-use VIP discount token; the agent signs them."""

    type: Literal["vip_upgrade"] = "vip_upgrade"
    token_id: NudgeId
    user_key: str
    user_id: str | None = None
    anonymous_id: str | None = None
    discount_percent: Percent
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    order_count: int
    channels: tuple[Channel, ...] = ()
    rules_version: str
    trigger_event_id: str
    timezone: str | None = None  # the shopper's zone, as on Nudge
    # The signed token (schemas.tokens), added by the agent before it is published.
    token: str | None = None

    def claims(self) -> dict[str, Any]:
        """JWT claims (RFC 7519 names where one exists) for the agent to sign."""
        return {
            "jti": self.token_id,
            "sub": self.user_key,
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
            "kind": self.type,
            "discount_percent": self.discount_percent,
            "order_count": self.order_count,
            "rules_version": self.rules_version,
        }


class CampaignMessage(_Message):
    """One campaign member's message (api/routes/campaigns.py, pipeline/campaigns/).

    Published on ``nudges`` (keyed by user) so the dispatcher sends it like a nudge:
    consent at send time, the daily cap, WhatsApp then SMS, receipts of kind
    ``campaign``. ``message_id`` is a hash of campaign and user, so a re-launch
    publishes ids the dispatcher has already handled.
    """

    type: Literal["campaign"] = "campaign"
    message_id: NudgeId
    campaign_id: str
    user_key: str
    # Other keys the user's consent may be stored under (anonymous ids merged into the user).
    anonymous_ids: tuple[str, ...] = ()
    template: Literal["campaign"] = "campaign"
    product: str | None = None
    discount_percent: Percent
    # The campaign's channel policy: the dispatcher uses no other channel.
    channels: tuple[Channel, ...] = ("whatsapp", "sms")
    launched_at: AwareDatetime


AnyDecision = Nudge | NudgeHeld | NudgeCancellation | VipUpgrade | CampaignMessage
Decision = Annotated[AnyDecision, Field(discriminator="type")]
_DECISION = TypeAdapter(Decision)


def load_decision(data: bytes | str) -> AnyDecision:
    """Read a decision back from its topic; raises ``pydantic.ValidationError``."""
    return _DECISION.validate_json(data)


def decided_at(decision: AnyDecision) -> datetime:
    """The event time a decision belongs to (for windows and sink partitions)."""
    if isinstance(decision, Nudge):
        return decision.decided_at
    if isinstance(decision, NudgeHeld):
        return decision.held_at
    if isinstance(decision, CampaignMessage):
        return decision.launched_at
    if isinstance(decision, NudgeCancellation):
        return decision.at
    return decision.issued_at


# --- delivery -----------------------------------------------------------------

ReceiptStatus = Literal[
    "sent",
    "delivered",
    "read",
    "clicked",
    "failed",
    "fallback",
    "cancelled",
    "suppressed",
    # Send-time checks (pipeline/dispatch/policy.py): held until quiet hours end, with
    # detail "quiet_hours_until:<UTC ISO time>"; expired with detail in EXPIRY_REASONS.
    "held",
    "expired",
    # A send whose answer never came (the dispatcher died mid-call, or the connection
    # dropped) and that no provider webhook reconciled: never resent (providers have no
    # idempotency keys), detail says why.
    "unknown",
    # A provider's webhook: it took the message (Meta's "sent", Twilio's queued/sent).
    "accepted",
]
# A channel's steps in the order they happen: what orders a message's receipts within
# one second (providers' webhooks carry whole seconds). Statuses not listed come first.
RECEIPT_LIFECYCLE = (
    "sent", "accepted", "delivered", "read", "clicked", "failed", "fallback", "unknown"
)  # fmt: skip
# Why a message expired at send time: too old for its kind; held past the maximum hold.
EXPIRED_STALE = "stale"
EXPIRED_MAX_HOLD = "quiet_hours_max_hold"
EXPIRY_REASONS = (EXPIRED_STALE, EXPIRED_MAX_HOLD)
HELD_UNTIL_PREFIX = "quiet_hours_until:"
# A high-intent nudge held for the shopper's best hour (docs/dispatch.md): until when.
SEND_TIME_UNTIL_PREFIX = "send_time_until:"
MessageKind = Literal["cart_rescue", "high_intent", "vip_upgrade", "campaign"]


class Receipt(_Message):
    """One step in a message's life, on the ``receipts`` topic (keyed by user).

    ``message_id`` is what a CTA link carries as ``utm_message_id``: the nudge
    id for a nudge (one logical message whatever the channel), the token id for
    a VIP upgrade, a per-member id for a campaign.
    """

    type: Literal["receipt"] = "receipt"
    # Stable hash of message, channel, status and the provider's event id: re-delivered
    # webhooks and re-sent records collapse to one row.
    receipt_id: NudgeId
    message_id: str
    kind: MessageKind
    user_key: str
    campaign_id: str | None = None
    channel: Literal["whatsapp", "sms", "email"] | None = None
    status: ReceiptStatus
    at: AwareDatetime
    provider_message_id: str | None = None
    # Why (a reason code such as "no_consent" or a provider error code), never personal data.
    detail: str | None = None
    # On "sent": the message's price from the rules' rate card, in its currency.
    cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    # What the provider bills the message as (Meta's pricing.category: marketing, utility,
    # service, ...), when its status webhook says.
    pricing_category: str | None = None
    # The message variant the dispatcher chose (schemas/bandit.py), on its own receipts.
    variant: str | None = None
    # Send-time optimisation (pipeline/dispatch/send_hours.py), on the dispatcher's own
    # receipts of a nudge in the experiment: its arm ("best_hour", "random_hour") and the
    # local hour it was held for (None: sent as decided).
    send_arm: Literal["best_hour", "random_hour"] | None = None
    send_hour: Annotated[int, Field(ge=0, le=23)] | None = None
