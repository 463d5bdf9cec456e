"""A dead-letter write that the flusher began when the stream stopped is awaited and counted by the
shutdown: entries written are never left out of summary.dlq_entries."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from k2cli.settings import Settings
from k2cli.stream.runner import StreamOptions, StreamRunner


class SlowDLQ:
    def __init__(self) -> None:
        self.written: list = []
        self.started = threading.Event()

    def write(self, batch: list) -> None:
        self.started.set()
        threading.Event().wait(0.3)  # a durable write takes a while
        self.written.extend(batch)


def test_a_write_cancelled_at_the_stop_is_still_counted(tmp_path):
    runner = StreamRunner(Settings(), StreamOptions(exchange="binance", symbols=("BTCUSDT",),
                                                    urls=("ws://127.0.0.1:1",), topic="t"))
    sink = runner.dead_letters
    sink.writer = dlq = SlowDLQ()

    async def main() -> None:
        sink.buffer = ["a", "b", "c"]
        flusher = asyncio.ensure_future(sink.flush())
        await asyncio.to_thread(dlq.started.wait, 5)
        flusher.cancel()  # what the lifecycle does to its background tasks at the stop
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        sink.buffer = ["d"]
        await sink.flush()  # what the shutdown does

    asyncio.run(main())
    assert dlq.written == ["a", "b", "c", "d"]
    assert runner.summary.dlq_entries == 4
