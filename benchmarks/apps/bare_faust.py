"""The reference worker: a bare batched Faust agent (``take_events`` + a dict update).

Run as ``python -m benchmarks.apps.bare_faust`` with INTENTFLOW_* settings; it
reads the same source topic as the measured worker, through the same
``create_app``, with no engine, state store or outputs.
"""

import faust
import orjson

from pipeline.app import create_app
from pipeline.settings import WorkerSettings
from pipeline.worker import run_worker


def register_bare_agent(app: faust.App, settings: WorkerSettings) -> None:
    source = app.topic(
        settings.source_topic, key_type=bytes, value_type=bytes, value_serializer="raw"
    )
    counts: dict[str, int] = {}

    @app.agent(source)
    async def count_events(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            for event in events:
                name = orjson.loads(event.message.value)["name"]
                counts[name] = counts.get(name, 0) + 1


if __name__ == "__main__":
    settings = WorkerSettings()
    run_worker(create_app(settings, registrations=[register_bare_agent]), settings)
