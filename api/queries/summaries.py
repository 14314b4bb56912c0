"""A nudge kind's figures for its summary (schemas/summaries.py), taken from the same
query functions as ``/v1/metrics/nudges``, ``/v1/metrics/uplift`` and
``/v1/metrics/send_time`` so that every
number the summary states is one the metrics API reports for the same range; and a
campaign's, from ``GET /v1/campaigns/{id}``'s own row (api/queries/campaigns.py).
"""

from typing import Any

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range
from api.queries.nudges import ALL, nudge_outcomes
from api.queries.send_time import SendTimeRow, send_time_rows
from api.queries.uplift import uplift
from schemas.runs import LIVE_RUN
from schemas.summaries import NudgeFigures, SendTimeFigures

# A message whose first channel failed or timed out gets a 'fallback' receipt (on the
# channel it left) before the next is tried: carried by SMS when it was then sent by
# SMS. Counted once per message, by the SMS send's time, as sends are counted.
_FALLBACKS = f"""
SELECT uniqExact(message_id) FROM receipts
WHERE status = 'sent' AND channel = 'sms' AND kind = {{kind:String}} AND {in_range("at")}
  AND message_id IN (
      SELECT message_id FROM receipts WHERE status = 'fallback' AND kind = {{kind:String}}
  )
"""


def sms_fallbacks(client: Client, time_range: TimeRange, kind: str) -> int:
    """Messages of ``kind`` sent by SMS in the range after another channel fell through."""
    result = client.query(_FALLBACKS, parameters={**time_range.params(), "kind": kind})
    return int(result.result_rows[0][0])


def nudge_figures(client: Client, time_range: TimeRange, window_s: int, kind: str) -> NudgeFigures:
    outcomes = nudge_outcomes(client, time_range, window_s, LIVE_RUN)
    # The kind's 'all' row counts each message once across channels; none: nothing sent.
    messages: dict[str, Any] = next(
        (r for r in outcomes if r["kind"] == kind and r["channel"] == ALL), {}
    )
    nudged, holdout, difference = uplift(client, time_range, kind)
    return NudgeFigures(
        kind=kind,
        sent=int(messages.get("sent", 0)),
        read=int(messages.get("read", 0)),
        fallback=sms_fallbacks(client, time_range, kind),
        nudged_users=nudged.users or 0,
        nudged_converted=nudged.converted or 0,
        holdout_users=holdout.users or 0,
        holdout_converted=holdout.converted or 0,
        uplift=difference.rate,
        uplift_low=difference.ci_low,
        uplift_high=difference.ci_high,
        send_time=_nudge_send_time(client, time_range, kind),
    )


def _nudge_send_time(client: Client, time_range: TimeRange, kind: str) -> SendTimeFigures | None:
    """The kind's send-time arms, as ``/v1/metrics/send_time`` gives them for the range;
    None when no nudge of it was in the experiment then (or the kind has none)."""
    if kind != "high_intent":  # the only kind a rule may send at the best hour
        return None
    rows: dict[str, SendTimeRow] = {r.arm: r for r in send_time_rows(client, time_range, kind)}
    best, random, difference = rows["best_hour"], rows["random_hour"], rows["difference"]
    if not (best.messages or random.messages):
        return None
    return SendTimeFigures(
        best_hour_messages=best.messages or 0,
        best_hour_read=best.read or 0,
        random_hour_messages=random.messages or 0,
        random_hour_read=random.read or 0,
        difference=difference.read_rate,
        difference_low=difference.ci_low,
        difference_high=difference.ci_high,
    )


# A campaign's messages that fell back to SMS: its targets' messages, as above.
_CAMPAIGN_FALLBACKS = """
SELECT uniqExact(message_id) FROM receipts
WHERE status = 'sent' AND channel = 'sms'
  AND message_id IN (
      SELECT message_id FROM campaign_members
      WHERE campaign_id = {campaign_id:String} AND member_group = 'target'
  )
  AND message_id IN (SELECT message_id FROM receipts WHERE status = 'fallback')
"""


def campaign_figures(client: Client, report: dict[str, Any]) -> NudgeFigures:
    """A campaign's figures from its report row (/v1/campaigns): targeted members are
    its nudged group, held-out members its holdout, within the attribution window."""
    fallbacks = client.query(
        _CAMPAIGN_FALLBACKS, parameters={"campaign_id": report["campaign_id"]}
    ).result_rows[0][0]
    return NudgeFigures(
        kind="campaign",
        sent=int(report["sent"]),
        read=int(report["read"]),
        fallback=int(fallbacks),
        nudged_users=int(report["treated_users"]),
        nudged_converted=int(report["treated_converted"]),
        holdout_users=int(report["holdout"]),
        holdout_converted=int(report["holdout_converted"]),
        uplift=float(report["uplift"]),
        uplift_low=float(report["uplift_ci_low"]),
        uplift_high=float(report["uplift_ci_high"]),
        send_time=_campaign_send_time(report),
    )


def _campaign_send_time(report: dict[str, Any]) -> SendTimeFigures | None:
    """A best-hour campaign's arms, from the same report row."""
    if report["send_time"] != "best_hour":
        return None
    return SendTimeFigures(
        best_hour_messages=int(report["best_hour_targets"]),
        best_hour_read=int(report["best_hour_read"]),
        random_hour_messages=int(report["random_hour_targets"]),
        random_hour_read=int(report["random_hour_read"]),
        difference=float(report["send_time_uplift"]),
        difference_low=float(report["send_time_uplift_ci_low"]),
        difference_high=float(report["send_time_uplift_ci_high"]),
    )
