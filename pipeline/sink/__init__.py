"""The warehouse sink: pure row processors, per-topic batches, idempotent inserts."""

from pipeline.sink.agents import register_sink

__all__ = ["register_sink"]
