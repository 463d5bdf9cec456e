"""SIGTERM/SIGINT during `k2 consume`: the first asks for a graceful stop, a second interrupts at once."""

from __future__ import annotations

from typing import Any, Protocol


class Stoppable(Protocol):
    """What the signal handler stops."""

    @property
    def stopping(self) -> bool: ...

    def request_stop(self, reason: str = "signal") -> None: ...


class stop_on_signals:
    """While active, SIGTERM/SIGINT ask the engine to stop gracefully; a second signal interrupts at once."""

    def __init__(self, engine: Stoppable) -> None:
        self._engine = engine
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self._engine.stopping:
            raise KeyboardInterrupt
        self._engine.request_stop(signal.Signals(signum).name)

    def __enter__(self) -> stop_on_signals:
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
