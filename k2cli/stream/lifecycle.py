"""How a `k2 stream` run stops: the stop event, SIGINT/SIGTERM, and background tasks watched for failure.

A bound (max_messages, duration) or a signal sets the stop event; the session sees it and closes its
connections, and the runner then flushes (see StreamRunner._shutdown). A background task that fails
stops the run loudly instead of letting it carry on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from k2cli.errors import K2Error
from k2cli.kafka.refusals import KafkaRefused
from k2cli.stream.summary import StoppedBy, StreamSummary

log = logging.getLogger("k2.stream")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Background = dict[str, Callable[[], Coroutine[Any, Any, None]]]  # what it is (for the log) -> the task's body


class Lifecycle:
    """The stop event and what set it; runs the background tasks beside the session."""

    def __init__(self, summary: StreamSummary, on_stopping: Callable[[], None],
                 on_failure: Callable[[K2Error], None]) -> None:
        self.summary = summary
        self.stop: asyncio.Event | None = None  # made by running(), in the event loop
        self._on_stopping = on_stopping  # a bound was reached: stop producing
        self._on_failure = on_failure  # a background task failed: the session raises this

    def request_stop(self, why: StoppedBy) -> None:
        """Stop at a bound (max_messages, duration): nothing more is produced, then the run flushes."""
        self.summary.note_stop(why)
        self._on_stopping()
        self._set()

    def on_signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGINT or SIGTERM: stop and flush (the summary keeps which, for the exit code)."""
        self.summary.note_stop("signal")
        if not self.summary.signal:
            self.summary.signal = sig.name
        log.info("stopping: flushing buffered trades to Kafka")
        self._set()

    def _set(self) -> None:
        assert self.stop is not None, "not running"
        self.stop.set()

    @contextlib.asynccontextmanager
    async def running(self, background: Background) -> AsyncIterator[asyncio.Event]:
        """Install the signal handlers and start the background tasks; yields the stop event.

        On the way out the tasks are cancelled (and awaited) and the signal handlers removed."""
        loop = asyncio.get_running_loop()
        self.stop = stop = asyncio.Event()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.on_signal, sig)
        tasks = [asyncio.create_task(self._guard(body(), what)) for what, body in background.items()]
        try:
            yield stop
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    async def _guard(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run a background task; if it fails, stop the stream loudly instead of carrying on without it."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except KafkaRefused as exc:  # an operator's setting: its one line is the run's error, no traceback
            self._on_failure(exc)
            self._set()
        except Exception as exc:
            log.exception("%s failed; stopping", what)
            self._on_failure(exc if isinstance(exc, K2Error) else K2Error(f"{what} failed: {exc}"))
            self._set()
