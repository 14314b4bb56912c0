"""One memory budget for every RocksDB database of a worker process.

Faust opens each table partition's database with its own write buffers (three of
64 MB) and its own 2 GiB block cache, so a process's RocksDB memory grows with the
partitions it owns and with the bytes written, not with the states it keeps:
measured, four partitions holding 3 MB of states took ~270 MB in memtables alone
(docs/production.md, "RocksDB's memory"). Following RocksDB's guidance, as Kafka
Streams' bounded-memory configuration and Quix Streams do, every partition database of
the process shares one block cache, and their memtables are charged to that cache by
one write-buffer manager: the process's RocksDB memory stays near ``memory_bytes``
whatever the partition count.
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

from faust.stores.rocksdb import RocksDBOptions
from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, WriteBufferManager

from pipeline.metrics import STATE_MEMORY

# Of the budget, what the memtables may take before the manager makes one flush.
MEMTABLE_SHARE = 0.5


@dataclass(frozen=True)
class SharedMemory:
    cache: Cache
    write_buffers: WriteBufferManager

    def report(self) -> None:
        """Set the gauges: the cache's usage includes the memtables charged to it."""
        STATE_MEMORY.labels("total").set(self.cache.get_usage())
        STATE_MEMORY.labels("memtables").set(self.write_buffers.get_usage())


@cache
def shared_memory(memory_bytes: int) -> SharedMemory:
    """The process's one budget of this size (a process opens its tables' databases
    through one ``SharedMemory``: two budgets would add up)."""
    block_cache = Cache(memory_bytes)
    write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
        int(memory_bytes * MEMTABLE_SHARE), False, block_cache
    )
    return SharedMemory(block_cache, write_buffers)


class SharedMemoryOptions(RocksDBOptions):
    """Faust's options for a partition database, with the process's shared budget."""

    def __init__(self, memory: SharedMemory) -> None:
        # A memtable is flushed at a quarter of the memtables' share: several partitions
        # fill theirs at once, and a smaller one flushes and frees sooner.
        super().__init__(
            write_buffer_size=max(1 << 20, memory.write_buffers.get_buffer_size() // 4),
            max_write_buffer_number=2,
            use_rocksdict=True,
        )
        self._memory = memory

    def as_options(self) -> Options:
        options = super().as_options()
        options.set_write_buffer_manager(self._memory.write_buffers)
        # Faust's table factory, with the shared cache in place of its own per database.
        table = BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(self._memory.cache)
        table.set_index_type(BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


def share_memory(table: Any, memory_bytes: int) -> None:
    """Open ``table``'s partition databases within the process's budget (before start:
    Faust opens them on assignment)."""
    table.data.rocksdb_options = SharedMemoryOptions(shared_memory(memory_bytes))
