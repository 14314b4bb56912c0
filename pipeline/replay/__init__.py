"""Replay and backtest: export recorded telemetry, replay it through a candidate rule set
into an isolated namespace, and compare runs (docs/replay.md).
"""
