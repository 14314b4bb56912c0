"""Every process's own metrics, in Prometheus's exposition format on an internal port.

Each process (API, worker, dispatcher, campaign launcher) keeps its metrics in
prometheus_client's default registry and serves them at ``/metrics`` on
``INTENTFLOW_METRICS_PORT``: a listener of its own, apart from the public API,
bound to the private network and never published (docs/production.md,
"Metrics"). One registry per process: no multiprocess mode, each is scraped
apart. Labels name topics, kinds, statuses, channels and reasons: never a user,
an event or a message, so their number stays bounded.

The families every kind of process writes live here; the stream workers' own
in pipeline/metrics.py.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

from schemas.settings import CommonSettings

# A `_created` series per counter doubles the series and no query here reads it.
disable_created_metrics()

# From a local Kafka acknowledgement (~1 ms) to a warehouse insert under load (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RECORDS_OUT = Counter(
    "intentflow_records_out",
    "Records produced and acknowledged by Kafka, per topic.",
    ["topic"],
)
SEND_SECONDS = Histogram(
    "intentflow_send_seconds",
    "From handing a batch of records to the Kafka producer to every acknowledgement.",
    ["producer"],
    buckets=LATENCY_BUCKETS,
)


@contextmanager
def timed_send(producer: str, topic_counts: dict[str, int]) -> Iterator[None]:
    """Time one acknowledged send; count its records per topic only once Kafka has them."""
    started = time.perf_counter()
    yield
    SEND_SECONDS.labels(producer).observe(time.perf_counter() - started)
    for topic, count in topic_counts.items():
        RECORDS_OUT.labels(topic).inc(count)


@contextmanager
def serving_metrics(settings: CommonSettings) -> Iterator[None]:
    """Serve ``/metrics`` on the settings' metrics port while the block runs (if one is set)."""
    if settings.metrics_port is None:
        yield
        return
    server, thread = start_http_server(settings.metrics_port, settings.metrics_bind)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
