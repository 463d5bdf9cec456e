"""librdkafka's own log lines through one logger, `k2.kafka.librdkafka`: warnings and worse only, and a line
that repeats (a broker refusing connections is reported every few milliseconds) shown once per interval with
the count of the repeats it stood for."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from k2cli.redaction import redact

NAME = "k2.kafka.librdkafka"
_VARYING = re.compile(r"\d+")  # times, counts and ids change between repeats of one condition
_MAX_KEYS = 1000


def shape(text: str) -> str:
    """A line with its numbers blanked: repeats of one condition have one shape."""
    return _VARYING.sub("#", text)


class CollapseRepeats(logging.Filter):
    """Pass the first line of each shape (secrets redacted), then one per `every_s` naming how many were held back."""

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        self._seen: dict[str, list[float]] = {}  # shape -> [time shown, repeats held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        text = redact(record.getMessage())
        key = shape(text)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.every_s:
            seen[1] += 1
            return False
        if len(self._seen) >= _MAX_KEYS:
            self._seen.clear()
        held = int(seen[1]) if seen is not None else 0
        self._seen[key] = [now, 0]
        record.msg, record.args = (f"{text} (repeated {held} times in the last {self.every_s:.0f}s)" if held
                                   else text), ()
        return True


def logger() -> logging.Logger:
    """The logger to hand librdkafka clients (`Consumer(conf, logger=...)`), set up once."""
    log = logging.getLogger(NAME)
    if not any(isinstance(f, CollapseRepeats) for f in log.filters):
        log.setLevel(logging.WARNING)
        log.addFilter(CollapseRepeats())
    return log
