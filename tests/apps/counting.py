"""A worker for tests: counts records per key in a RocksDB table and publishes each new count.

Run as ``python -m tests.apps.counting`` with INTENTFLOW_* settings; the test reads
the output topic. It goes through ``pipeline.app.create_app`` and ``run_worker``
exactly like the real worker, with its own registration instead of the engine's.
"""

import faust

from pipeline.app import create_app
from pipeline.settings import WorkerSettings
from pipeline.worker import run_worker
from schemas.topics import DEFAULT_USER_PARTITIONS, TopicSpec

COUNT_INPUT = TopicSpec("test.counting.in", DEFAULT_USER_PARTITIONS)
COUNT_OUTPUT = TopicSpec("test.counting.out", DEFAULT_USER_PARTITIONS)


def register_counter(app: faust.App, settings: WorkerSettings) -> None:
    counts = app.Table("counts", default=int, partitions=settings.user_partitions)
    source = app.topic(COUNT_INPUT.name, key_type=bytes, value_type=bytes, value_serializer="raw")
    output = app.topic(COUNT_OUTPUT.name, key_type=bytes, value_type=bytes, value_serializer="raw")

    @app.agent(source)
    async def count(stream: faust.StreamT) -> None:
        async for key, _value in stream.items():
            user = key.decode()
            counts[user] += 1
            await output.send(key=key, value=str(counts[user]).encode())


if __name__ == "__main__":
    settings = WorkerSettings()
    run_worker(create_app(settings, registrations=[register_counter]), settings)
