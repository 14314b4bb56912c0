"""What bounds a long soak on the local broker: the cost of one fetch against the number
of batches a partition holds.

    python -m tests.soak.broker_fetch [--steps 4] [--step-batches 5000] [--records-per-batch 1]

Starts its own Tansu broker (memory storage, as the local stack runs it), then in each
step produces ``--step-batches`` batches of ``--records-per-batch`` records of ~1.2 KB
(a raw event's size) to every partition of a 4-partition topic, and times one fetch of
the last batch of every partition (``tests.support.tail_fetch_ms``, median of 5). Tansu
0.6's memory storage lists every batch object of the partition on each fetch, so the
time grows with batches stored, not bytes: run it with ``--records-per-batch 1000`` for
the same bytes in far fewer batches (docs/reliability.md, "The 30-minute run").
"""

import argparse
import asyncio
import statistics
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.local.broker import Broker
from tests import support
from tests.soak.__main__ import proc_rss

TOPIC = "soak.fetch"
PARTITIONS = 4
RECORD = b"x" * 1200
IN_FLIGHT = 256  # batches awaited together


async def produce_batches(producer: AIOKafkaProducer, batches: int, records: int) -> None:
    pending = []
    for _ in range(batches):
        for partition in range(PARTITIONS):
            batch = producer.create_batch()
            for _ in range(records):
                batch.append(key=None, value=RECORD, timestamp=None)
            batch.close()
            pending.append(await producer.send_batch(batch, TOPIC, partition=partition))
            if len(pending) >= IN_FLIGHT:
                await asyncio.gather(*pending)
                pending.clear()
    await asyncio.gather(*pending)


async def run(args: argparse.Namespace) -> None:
    broker = Broker().start()
    try:
        brokers = broker.bootstrap_servers
        admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=brokers, max_request_size=16 << 20)
        await producer.start()
        print(
            f"broker fetch cost: {args.records_per_batch} record(s) of {len(RECORD)} B per "
            f"batch, {PARTITIONS} partitions; one fetch of every partition's last batch"
        )
        print("batches/partition  records      broker MB  produce batches/s  tail fetch ms")
        try:
            stored = 0
            for _ in range(args.steps):
                started = time.perf_counter()
                await produce_batches(producer, args.step_batches, args.records_per_batch)
                rate = args.step_batches * PARTITIONS / (time.perf_counter() - started)
                stored += args.step_batches
                fetches = [await support.tail_fetch_ms(brokers, TOPIC) for _ in range(5)]
                records = stored * PARTITIONS * args.records_per_batch
                print(
                    f"{stored:>17,}  {records:>11,}  {proc_rss(broker.process.pid) / 2**20:>9,.0f}"
                    f"  {rate:>17,.0f}  {statistics.median(f or 0.0 for f in fetches):>13,.1f}",
                    flush=True,
                )
        finally:
            await producer.stop()
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak.broker_fetch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--step-batches", type=int, default=5_000, help="per partition")
    parser.add_argument("--records-per-batch", type=int, default=1)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
