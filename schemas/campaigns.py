"""Campaigns: the stored definition's columns, member ids and groups. Pure.

Shared by the API (which stores campaigns and reports on them) and the launcher
(pipeline/campaigns/, which picks the members and publishes their messages).
"""

from hashlib import blake2b
from typing import Literal

CampaignStatus = Literal["scheduled", "launched"]
MemberGroup = Literal["target", "holdout", "no_consent"]
# Channels the dispatcher can send on, in its order of preference.
CAMPAIGN_CHANNELS = ("whatsapp", "sms")

CAMPAIGN_COLUMNS = [
    "campaign_id",
    "name",
    "segment_id",
    "rules",
    "template",
    "product",
    "discount_percent",
    "channels",
    "holdout_share",
    "send_at",
    "quiet_start",
    "quiet_end",
    "timezone",
    "status",
    "created_at",
    "created_by",
    "launched_at",
    "updated_at",
]
MEMBER_COLUMNS = [
    "campaign_id",
    "user_key",
    "message_id",
    "member_group",
    "channels",
    "added_at",
    "send_after",
    "anonymous_ids",
]


def member_message_id(campaign_id: str, user_key: str) -> str:
    """The member's message id (and utm_message_id): the same on every launch attempt."""
    return blake2b(f"campaign\x1f{campaign_id}\x1f{user_key}".encode(), digest_size=16).hexdigest()


def in_holdout(campaign_id: str, user_key: str, share: float) -> bool:
    """A deterministic draw per campaign: the same member is held out on every attempt."""
    digest = blake2b(f"holdout\x1f{campaign_id}\x1f{user_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 < share


def member_group(
    campaign_id: str, user_key: str, consented: list[str], policy: list[str], share: float
) -> tuple[MemberGroup, list[str]]:
    """(group, usable channels): consent first, then the holdout among the reachable,
    so holdout and target are alike but for the message."""
    usable = [c for c in policy if c in consented]
    if not usable:
        return "no_consent", []
    if in_holdout(campaign_id, user_key, share):
        return "holdout", usable
    return "target", usable
