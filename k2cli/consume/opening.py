"""Start-up: services retried for the start-up timeout; the table opened in a thread of its own meanwhile (while the
consumer checks the registry and joins the group)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from k2cli.consume.committer import BACKOFF
from k2cli.errors import ServiceUnavailable
from k2cli.reliability.retry import retry

log = logging.getLogger("k2.consume")

T = TypeVar("T")


def until_ready(what: str, fn: Callable[[], T], deadline: float, should_stop: Callable[[], bool],
                clock: Callable[[], float], name_in_error: bool = True) -> T:
    """Call fn, retrying transient failures (not a wrong URL) with backoff until the deadline (s)."""
    def note(attempt: int, exc: BaseException, wait: float) -> None:
        log.warning("%s (retrying in %.1fs): %s", what, wait, exc)

    try:
        return retry(fn, attempts=None, deadline=deadline, backoff=BACKOFF, should_stop=should_stop, clock=clock,
                     on_retry=note)
    except ServiceUnavailable as exc:
        named = exc if not name_in_error else ServiceUnavailable(f"{what}: {exc}", setting=exc.setting)
        raise named from None


class TableOpening:
    """`open_table(gave_up)` running in the background; `gave_up()` turns true once start-up failed elsewhere."""

    def __init__(self, open_table: Callable[[Callable[[], bool]], Any]) -> None:
        self.abandoned = False
        opener = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k2-open-table")
        try:
            self._future = opener.submit(open_table, lambda: self.abandoned)
        finally:
            opener.shutdown(wait=False)

    def check(self) -> None:
        """Raise the opening's error now if it has already failed."""
        if self._future.done():
            self._future.result()

    def wait(self) -> None:
        """Wait until the table is open (raising the opening's error)."""
        self._future.result()

    def abandon(self) -> None:
        """Start-up failed: stop the opening's retries and wait for it to end."""
        self.abandoned = True
        with contextlib.suppress(BaseException):
            self._future.result()
