"""Send-time optimisation of nudges, measured: the best-hour arm against the random-hour
control (pipeline/dispatch/send_hours.py; the arm is on the dispatcher's receipts).

Messages are the nudges of the kind in the experiment whose first receipt with an arm
(held or sent) falls in the range: intention to treat, so a nudge its hold made expire or
the cap suppressed counts, unread. A message was read when any receipt of it is ``read``
or ``clicked`` (an SMS has no read receipt, only its clicks), by the time of the query.
Per arm: the read rate with its Wilson 95 % interval; the difference (best hour minus
random hour) with Newcombe's interval, as the campaigns' report (api/queries/uplift.py).
"""

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from api.queries.common import TimeRange, in_range
from api.queries.uplift import newcombe, wilson

ARMS = ("best_hour", "random_hour")

_SQL = f"""
SELECT a.arm, count(), countIf(a.was_sent), countIf(r.engaged)
FROM (
    SELECT message_id, any(send_arm) AS arm, max(status = 'sent') AS was_sent,
           min(at) AS first_at
    FROM receipts
    WHERE kind = {{kind:String}} AND send_arm != ''
    GROUP BY message_id
    HAVING {in_range("first_at")}
) AS a
LEFT JOIN (
    SELECT message_id, 1 AS engaged FROM receipts
    WHERE status IN ('read', 'clicked')
      AND message_id IN (
          SELECT message_id FROM receipts WHERE kind = {{kind:String}} AND send_arm != ''
      )
    GROUP BY message_id
) AS r ON a.message_id = r.message_id
GROUP BY a.arm
SETTINGS join_use_nulls = 0
"""


@dataclass(frozen=True, slots=True)
class SendTimeRow:
    arm: str  # best_hour, random_hour, or difference (best hour minus random hour)
    messages: int | None
    sent: int | None
    read: int | None
    read_rate: float
    ci_low: float
    ci_high: float


def send_time_rows(client: Client, time_range: TimeRange, kind: str) -> list[SendTimeRow]:
    params = {**time_range.params(), "kind": kind}
    found = {
        arm: (int(n), int(sent), int(read))
        for arm, n, sent, read in client.query(_SQL, parameters=params).result_rows
    }
    rows = []
    for arm in ARMS:
        n, sent, read = found.get(arm, (0, 0, 0))
        low, high = wilson(read, n)
        rows.append(SendTimeRow(arm, n, sent, read, read / n if n else 0.0, low, high))
    best, random = rows
    low, high = newcombe(best.read or 0, best.messages or 0, random.read or 0, random.messages or 0)
    rows.append(
        SendTimeRow("difference", None, None, None, best.read_rate - random.read_rate, low, high)
    )
    return rows
