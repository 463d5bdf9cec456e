"""Decode worker processes: Avro decoding is the consumer's bottleneck and holds the GIL, so it runs here.

The consumer process keeps Kafka, the batch's offsets, Iceberg and the DLQ; workers only turn lists of framed
values into Arrow (`decode_chunk`), returned as Arrow IPC bytes. Workers are spawned (no fork of a process that
runs librdkafka threads), ignore SIGINT/SIGTERM (the consumer coordinates shutdown) and exit on their own when
the consumer process dies, however it dies.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from k2cli.consume.batch import ChunkResult, decode_chunk, use_system_allocator
from k2cli.kafka.registry_access import RegistryAccess

_decoder: Any = None


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _init(registry: RegistryAccess, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="k2-parent-watch").start()
    global _decoder
    from k2cli.consume.decode import ValueDecoder
    from k2cli.kafka.registry import RegistryClient

    _decoder = ValueDecoder(RegistryClient(registry), "python")  # workers serve the pure path only
    use_system_allocator()
    gc.collect()
    gc.freeze()
    gc.disable()  # decoded records are acyclic; collected explicitly below


def _decode(values: list[bytes | None]) -> tuple[bytes, list[Any], int | None]:
    import pyarrow as pa

    result = decode_chunk(_decoder, values)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, result.table.schema) as writer:
        writer.write_batch(result.table)
    del result.table
    gc.collect(0)
    return sink.getvalue().to_pybytes(), result.poison, result.stalled_at


def _ready() -> int:
    return os.getpid()


def unpack(payload: tuple[bytes, list[Any], int | None]) -> ChunkResult:
    """A worker's reply as a ChunkResult."""
    import pyarrow as pa

    data, poison, stalled_at = payload
    table = pa.ipc.open_stream(data).read_next_batch()
    return ChunkResult(table, poison, stalled_at)


class DecodePool:
    """A fixed set of decode worker processes."""

    def __init__(self, workers: int, registry: RegistryAccess) -> None:
        import multiprocessing

        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init, initargs=(registry, os.getpid()))

    def start(self) -> None:
        """Start every worker now rather than on the first chunk, without waiting for them."""
        for _ in range(self.workers):
            self._pool.submit(_ready)

    def submit(self, values: list[bytes | None]) -> Future:
        """Decode a chunk in a worker; the future's result goes through `unpack`."""
        return self._pool.submit(_decode, values)

    def close(self) -> None:
        """Stop the workers (pending work is cancelled)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
