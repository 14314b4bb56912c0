"""The runs the warehouse holds decisions of (the console's backtests page).

The comparison of two runs is schemas/backtests.py's, shared with the CLI.
"""

from clickhouse_connect.driver.client import Client

RECENT_RUNS_SQL = """
SELECT run_id, count(), uniqExact(user_key), min(decided_at), max(decided_at)
FROM nudges GROUP BY run_id ORDER BY max(decided_at) DESC LIMIT 100
"""


def recent_runs(client: Client) -> list[tuple]:
    """(run id, decisions, users, first, last decided_at), the latest run first."""
    return client.query(RECENT_RUNS_SQL).result_rows
