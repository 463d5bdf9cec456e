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
    runner._dlq = dlq = SlowDLQ()

    async def main() -> None:
        runner._dlq_buffer = ["a", "b", "c"]
        flusher = asyncio.ensure_future(runner._flush_dlq())
        await asyncio.to_thread(dlq.started.wait, 5)
        flusher.cancel()  # what _main does to its background tasks at the stop
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        runner._dlq_buffer = ["d"]
        await runner._flush_dlq()  # what _shutdown does

    asyncio.run(main())
    assert dlq.written == ["a", "b", "c", "d"]
    assert runner.summary.dlq_entries == 4
