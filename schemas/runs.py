"""Run ids: every decision row names the run that made it (the ``run_id`` column).

``live`` is the live pipeline's; a replay takes any other id (pipeline/replay/namespace.py),
and a backtest compares two runs, ``live`` included (schemas/backtests.py).
"""

LIVE_RUN = "live"
