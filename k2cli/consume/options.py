"""What one `k2 consume` run does, and the error of a run that stopped with records unwritten."""

from __future__ import annotations

import os
from dataclasses import dataclass

from k2cli.consume.native import DECODERS
from k2cli.errors import ConfigError, K2Error


class ConsumeFailed(K2Error):
    """The consumer stopped without writing everything it had read (the records will be read again)."""

    exit_code = 3


@dataclass
class ConsumeOptions:
    """What one `k2 consume` run does (settings give the defaults)."""

    topics: tuple[str, ...]
    group: str
    table: str
    batch_size: int
    flush_interval: float
    max_messages: int | None = None
    instance_id: str = ""
    startup_timeout: float = 30.0
    decode_workers: int = -1  # -1: 2 worker processes for batches of 5,000+ records on 2+ cores, else inline
    dedup: bool = True  # write each (exchange, symbol, trade_id) once
    until_caught_up: bool = False  # stop once every owned partition is read to its end offset
    decoder: str = "auto"  # auto | native | python (k2cli.consume.native)

    @property
    def workers(self) -> int:
        """How many decode worker processes to run (0: decode in the consumer process)."""
        if self.decode_workers >= 0:
            return self.decode_workers
        return 2 if self.batch_size >= 5000 and (os.cpu_count() or 1) >= 2 else 0

    def check(self) -> None:
        """Reject options that cannot work, naming the flag."""
        if not self.topics or any(not t.strip() for t in self.topics):
            raise ConfigError("--topics needs at least one topic name", setting="K2_CONSUMER_TOPICS")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}", setting="K2_BATCH_SIZE")
        if self.flush_interval <= 0:
            raise ConfigError(f"--flush-interval must be greater than 0, got {self.flush_interval}",
                              setting="K2_FLUSH_INTERVAL")
        if self.max_messages is not None and self.max_messages < 1:
            raise ConfigError(f"--max-messages must be at least 1, got {self.max_messages}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"K2_CONSUMER_DECODER must be one of {', '.join(DECODERS)}, got {self.decoder!r}",
                              setting="K2_CONSUMER_DECODER")
        if not self.group:
            raise ConfigError("--group must not be empty", setting="K2_CONSUMER_GROUP")
