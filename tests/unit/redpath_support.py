"""Red-path unit tests: a Context holding plain state, and stream runs built from plain values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2cli.checks.context import Context, Options
from k2cli.checks.model import Result
from k2cli.checks.probes.pipeline import StreamRun
from k2cli.checks.probes.proc import Completed
from k2cli.settings import Settings
from k2cli.soak.scrape import parse
from k2cli.verdict import Status


@dataclass(frozen=True)
class Consumed:
    """A consumed Kafka message as the e2e steps read it back: its partition and offset."""

    part: int
    off: int

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off


def context(home: Path, state: dict[str, Any] | None = None, *, exchange: str = "binance",
            thresholds: dict[str, float] | None = None, **settings: Any) -> Context:
    """A Context over default settings (K2_HOME at home), with these thresholds and measurements in its state."""
    ctx = Context(Settings(home=home, thresholds=thresholds or {}, **settings), Options(exchange=exchange))
    ctx.state.update(state or {})
    return ctx


def stream_run(metrics: str = "", stderr: str = "", *, started_wall: float = 0.0, scraped_at: float = 0.0,
               duration: float = 8.0) -> StreamRun:
    """A finished `k2 stream` run: its stderr and one /metrics scrape (Prometheus text) at scraped_at."""
    done = Completed(("stream", "binance"), 0, "", stderr, duration)
    return StreamRun("k2-validate.test", started_wall, done, 0, [(scraped_at, parse(metrics))] if metrics else [])


def assert_red(result: Result, status: Status, *words: str) -> None:
    """The result has this status and every word appears in its summary or evidence."""
    text = " | ".join([result.summary, *result.evidence])
    assert result.status is status, f"{result.status}: {text}"
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
