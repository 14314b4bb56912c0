"""Campaigns: the stored definition's columns, member ids and groups. Pure.

Shared by the API (which stores campaigns and reports on them) and the launcher
(pipeline/campaigns/, which picks the members and publishes their messages).
"""

from hashlib import blake2b
from typing import Literal

# scheduled → launched; scheduled → failed (the launcher could not launch it, with the
# reason); scheduled or launched → cancelled (an admin; deferred messages are not sent).
CampaignStatus = Literal["scheduled", "launched", "failed", "cancelled"]
# Not finished: an admin may still cancel it (a launched one may have deferred messages).
CANCELLABLE: tuple[CampaignStatus, ...] = ("scheduled", "launched")
# Never sent anything: an admin may delete it.
DELETABLE: tuple[CampaignStatus, ...] = ("scheduled", "failed", "cancelled")
MemberGroup = Literal["target", "holdout", "no_consent"]
# When each target's message goes out: at launch (after quiet hours), or at the member's
# best hour learned from their reads and clicks (pipeline/campaigns/best_hour.py).
SendTime = Literal["as_created", "best_hour"]
# A target's arm: '' (as created), or a best-hour campaign's learned or random-hour arm.
SendArm = Literal["", "best_hour", "random_hour"]
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
    "send_time",
    "status",
    "created_at",
    "created_by",
    "launched_at",
    "updated_at",
]
# A new status (and its reason) for one campaign, copied server-side from its current
# row: no value is read back into Python, so a row whose times Python cannot hold (a
# send_at in year 1, stored before the API refused it) can still be failed or
# cancelled. Only from the statuses given; the newest updated_at wins
# (ReplacingMergeTree(updated_at)).
_CHANGED = {
    "status": "{status:String}",
    "updated_at": "greatest(now64(3, 'UTC'), updated_at + toIntervalMillisecond(1))",
}
STATUS_CHANGE_SQL = f"""
INSERT INTO campaigns ({", ".join(CAMPAIGN_COLUMNS)}, status_reason)
SELECT {", ".join(_CHANGED.get(c, c) for c in CAMPAIGN_COLUMNS)}, {{reason:String}}
FROM campaigns FINAL
WHERE campaign_id = {{campaign_id:String}} AND status IN {{from_statuses:Array(String)}}
"""
MEMBER_COLUMNS = [
    "campaign_id",
    "user_key",
    "message_id",
    "member_group",
    "channels",
    "added_at",
    "send_after",
    "anonymous_ids",
    "send_arm",
    "send_hour",
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
