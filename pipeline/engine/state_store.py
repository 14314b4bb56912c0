"""Write-behind user state over a Faust table: one RocksDB write and one changelog record
per dirty user per batch, never one per event.

Faust's own ``table[key] = value`` costs ~200 µs (store put plus a changelog
``send_soon``); measured here it halves a worker's throughput. This store keeps
states in memory while a batch is folded and, at ``flush``, produces the raw
key/value records to the table's changelog with aiokafka, then writes the same
records to the table's RocksDB partitions with a ``WriteBatch`` — exactly what
Faust's recovery replays into RocksDB (``Store.apply_changelog_batch``), so a
restarted or newly assigned worker recovers the state through Faust as usual.

The ``WriteBatch`` also carries Faust's persisted changelog offset, as
``apply_changelog_batch`` does: RocksDB then says how far into the changelog it
is, and a restarted worker's recovery starts after the last record flushed.
Without it the offset stays where Faust's last recovery left it, the next
recovery replays every later record over newer states, and on Tansu — whose
end offsets stop at the first record of a partition's last batch
(docs/local-stack.md) — stops before the newest: a state written just before
a crash went back to an older one while the raw offsets of the events folded
into it were already committed, so those events were lost to the fold (seen in
``make chaos``: a cart missing an ``add_to_cart``, a different nudge).
Changelog first, RocksDB second: RocksDB is never ahead of the changelog.
"""

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from rocksdict import WriteBatch

from pipeline.engine.outputs import KafkaOutputs, Record
from pipeline.metrics import timed_flush

State = TypeVar("State")

_DELETED = object()


class EncodedState:
    """An idle state kept in the cache in its stored form: ~1 KB against ~7 KB decoded
    (benchmarks/state.py). Decoded again when a batch touches it."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


# Faust keeps the partition's persisted changelog offset in the same database.
FAUST_OFFSET_KEY = b"__faust\0offset__"
# The partition's event-time watermark, beside its states in the same atomic write and
# changelog: a restarted or new owner goes on from the watermark the states were made
# under, as a replay of the log does. Ids never hold control characters (the event
# contract), so no state key can start with a NUL.
WATERMARK_KEY = b"\0intentflow\0watermark"


class UserStateStore(Generic[State]):
    def __init__(
        self,
        table: Any,
        outputs: KafkaOutputs,
        encode: Callable[[State], bytes],
        decode: Callable[[bytes], State],
        max_cached: int = 50_000,
        idle_flushes: int = 50,
    ) -> None:
        self._table = table
        self._outputs = outputs
        self._encode = encode
        self._decode = decode
        self._max_cached = max_cached
        self._cache: dict[str, Any] = {}
        self._dirty: dict[str, int] = {}
        self._watermarks: dict[int, int] = {}  # partition -> watermark not yet flushed
        # A state unchanged for this many flushes waits encoded: a shopper's events come
        # in bursts, and decoding one costs about what encoding it at each flush does.
        self._idle_flushes = idle_flushes
        self._flushes = 0
        # key -> (flush that wrote it, what it wrote), least recently written first.
        self._written: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    # Faust's RocksDB store opens one database per partition; Faust owns opening
    # and closing them, we only batch writes into them.
    def _db(self, partition: int) -> Any:
        return self._table.data._db_for_partition(partition)

    @property
    def changelog_topic(self) -> str:
        return self._table.changelog_topic.get_topic_name()

    def get(self, key: str, partition: int) -> State | None:
        found = self._cache.get(key)
        if found is None:
            raw = self._db(partition).get(key.encode())
            if raw is None:
                return None
            found = self._cache[key] = self._decode(raw)
        elif type(found) is EncodedState:
            found = self._cache[key] = self._decode(found.data)
        return None if found is _DELETED else found

    def _cached(self, key: str) -> Any:
        """The cache's entry decoded (None: not cached; ``_DELETED``), without keeping it."""
        found = self._cache.get(key)
        return self._decode(found.data) if type(found) is EncodedState else found

    def put(self, key: str, partition: int, state: State) -> None:
        self._cache[key] = state
        self._dirty[key] = partition

    def delete(self, key: str, partition: int) -> None:
        self._cache[key] = _DELETED
        self._dirty[key] = partition

    def put_watermark(self, partition: int, watermark_ms: int) -> None:
        self._watermarks[partition] = watermark_ms

    def watermark(self, partition: int) -> int | None:
        """The partition's watermark as last written (flushed or not); None if never."""
        pending = self._watermarks.get(partition)
        if pending is not None:
            return pending
        raw = self._db(partition).get(WATERMARK_KEY)
        return None if raw is None else int(raw)

    async def flush(self) -> None:
        """Persist every dirty state: the changelog (acknowledged by Kafka), then RocksDB."""
        if not self._dirty and not self._watermarks:
            return
        topic = self.changelog_topic
        # Snapshot: states dirtied while we await belong to the next flush.
        dirty, self._dirty = self._dirty, {}
        watermarks, self._watermarks = self._watermarks, {}
        batches: dict[int, WriteBatch] = {}
        changelog: list[Record] = []
        for key, partition in dirty.items():
            state = self._cache[key]
            raw_key = key.encode()
            value = None if state is _DELETED else self._encode(state)
            self._written.pop(key, None)
            if value is not None:
                self._written[key] = (self._flushes, value)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = WriteBatch(raw_mode=True)
            if value is None:
                batch.delete(raw_key)
            else:
                batch.put(raw_key, value)
            changelog.append((topic, raw_key, value, partition))
        # Watermarks last: a recovery on Tansu can stop after the first record of a
        # partition's last batch (docs/local-stack.md); a watermark lost there only
        # starts lower, as it did before watermarks were kept.
        for partition, watermark_ms in watermarks.items():
            value = str(watermark_ms).encode()
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = WriteBatch(raw_mode=True)
            batch.put(WATERMARK_KEY, value)
            changelog.append((topic, WATERMARK_KEY, value, partition))
        with timed_flush("state"):
            last_offsets = await self._outputs.send_all(changelog)
            for partition, batch in batches.items():
                # Faust's format (``Store.set_persisted_offset``), in the same atomic write.
                batch.put(FAUST_OFFSET_KEY, str(last_offsets[topic, partition]).encode())
                self._db(partition).write(batch)
        self._flushes += 1
        self._rest_idle()
        self._evict()

    def _rest_idle(self) -> None:
        written, cache = self._written, self._cache
        oldest = self._flushes - self._idle_flushes
        while written:
            key, (flush, value) = next(iter(written.items()))
            if flush >= oldest:
                return
            written.popitem(last=False)
            # Dirtied again (during the send above, say): it is written anew later.
            if key not in self._dirty and key in cache:
                cache[key] = EncodedState(value)

    def _evict(self) -> None:
        # Drop the oldest clean entries past the bound; they are in RocksDB now.
        excess = len(self._cache) - self._max_cached
        if excess <= 0:
            return
        excess += self._max_cached // 5
        for key in list(self._cache):
            if excess <= 0:
                break
            if key not in self._dirty:
                del self._cache[key]
                excess -= 1

    def forget(self, partitions: set[int]) -> None:
        """After a revocation: drop the whole cache, every partition's (states reload
        from RocksDB on the next read), refusing while a revoked partition has an
        unflushed state or watermark."""
        if not partitions:
            return
        stale = [k for k, p in self._dirty.items() if p in partitions]
        if stale or partitions & self._watermarks.keys():
            raise RuntimeError("forget() before flush() would lose state")
        self._cache.clear()
        self._written.clear()

    def scan_prefix(self, partition: int, prefix: str) -> Iterator[tuple[str, State]]:
        """The states of one partition whose keys start with ``prefix``, in key order
        (RocksDB's bytewise order, which UTF-8 keeps), unflushed writes included and
        deletions honoured. Lazy: RocksDB seeks to the prefix, so reading the first few
        costs those few, not the partition."""
        raw_prefix = prefix.encode()
        db = self._db(partition)
        unflushed = sorted(
            k for k, p in self._dirty.items() if p == partition and k.startswith(prefix)
        )
        i = 0
        for raw_key, raw_value in db.items(from_key=raw_prefix):
            if not raw_key.startswith(raw_prefix):
                break
            key = raw_key.decode()
            while i < len(unflushed) and unflushed[i] < key:
                yield from self._live(unflushed[i])
                i += 1
            if i < len(unflushed) and unflushed[i] == key:
                i += 1
                yield from self._live(key)  # the unflushed state wins
                continue
            cached = self._cached(key)
            if cached is _DELETED:
                continue
            yield key, cached if cached is not None else self._decode(raw_value)
        for key in unflushed[i:]:
            yield from self._live(key)

    def _live(self, key: str) -> Iterator[tuple[str, State]]:
        state = self._cached(key)
        if state is not None and state is not _DELETED:
            yield key, state

    def scan(self, partition: int) -> Iterator[tuple[str, State]]:
        """Every stored state of one partition (to rebuild the deadline index on assignment)."""
        db = self._db(partition)
        for raw_key, raw_value in db.items():
            if raw_key in (FAUST_OFFSET_KEY, WATERMARK_KEY):
                continue
            key = raw_key.decode()
            cached = self._cached(key)
            if cached is _DELETED:
                continue
            yield key, cached if cached is not None else self._decode(raw_value)
