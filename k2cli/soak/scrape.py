"""Read a child's /metrics endpoint (Prometheus text format) into the counters a soak sample records.

The names are the ones `k2 stream` (k2cli/observe/metrics.py) and `k2 consume` export.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


class ScrapeError(Exception):
    """The metrics endpoint did not answer with Prometheus text."""


@dataclass
class Metrics:
    """Samples of one scrape, by sample name (counters keep their `_total` suffix)."""

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)  # sample names whose family is declared (maybe no series yet)

    def names(self) -> set[str]:
        """Every sample name present or declared."""
        return set(self.samples) | self.declared

    def total(self, name: str, **labels: str) -> float | None:
        """The sum of a sample's series whose labels match; 0 for a declared family with no series yet
        (a labelled counter before its first increment); None when the name is unknown."""
        if name not in self.samples:
            return 0.0 if name in self.declared else None
        return sum(v for lbl, v in self.samples[name] if all(lbl.get(k) == val for k, val in labels.items()))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """A sample's values summed per value of one label."""
        out: dict[str, float] = {}
        for lbl, v in self.samples.get(name, []):
            key = lbl.get(label, "")
            out[key] = out.get(key, 0.0) + v
        return out


def parse(text: str) -> Metrics:
    """Parse Prometheus text exposition format."""
    metrics = Metrics()
    try:
        for family in text_string_to_metric_families(text):
            metrics.declared.add(family.name)
            if family.type == "counter":
                metrics.declared.add(family.name + "_total")
            for s in family.samples:
                metrics.samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    except (ValueError, TypeError) as exc:
        raise ScrapeError(f"not Prometheus text: {exc}") from None
    return metrics


def fetch(url: str, timeout: float = 3.0) -> Metrics:
    """GET a metrics endpoint and parse it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(f"{url}: {reason}") from None
    return parse(body)


@dataclass(frozen=True)
class StreamReading:
    """The stream counters a soak sample records (cumulative since the child started)."""

    messages: float | None
    reconnects: dict[str, float]
    rotations: float | None
    pings: float | None
    pong_timeouts: float | None
    integrity_errors: float | None
    leak_score: float | None


def stream_reading(m: Metrics, exchange: str) -> StreamReading:
    """Pick the stream's counters out of a scrape (names from k2cli/observe/metrics.py)."""
    p = exchange
    errors = [m.total("k2_stream_frame_errors_total"), m.total("k2_stream_produce_errors_total")]
    present = [e for e in errors if e is not None]
    reconnects = m.by_label(f"{p}_reconnects_total", "reason")
    return StreamReading(
        messages=m.total(f"{p}_messages_received_total"),
        reconnects=reconnects,
        rotations=m.total(f"{p}_connection_rotations_total"),
        pings=m.total(f"{p}_pings_sent_total"),
        pong_timeouts=m.total(f"{p}_pong_timeouts_total"),
        integrity_errors=sum(present) if present else None,
        leak_score=m.total("memory_leak_detection_score"),
    )


# `k2 consume` names (k2cli/observe/consumer_metrics.py)
CONSUMED = "k2_messages_consumed_total"
WRITTEN = "k2_messages_written_total"
LAG = "k2_consumer_total_lag_messages"
DLQ = "k2_dlq_entries_total"
BREAKER = "k2_circuit_breaker_state"  # 0 closed, 1 half-open, 2 open


@dataclass(frozen=True)
class ConsumerReading:
    """The consumer counters a soak sample records."""

    consumed: float | None
    written: float | None
    lag: float | None
    dlq_entries: float | None
    breaker_state: float | None  # the worst breaker: 0 closed, 1 half-open, 2 open


def consumer_reading(m: Metrics) -> ConsumerReading:
    """Pick the consumer's counters out of a scrape."""
    breakers = [v for _, v in m.samples.get(BREAKER, [])]
    return ConsumerReading(consumed=m.total(CONSUMED), written=m.total(WRITTEN), lag=m.total(LAG),
                           dlq_entries=m.total(DLQ), breaker_state=max(breakers) if breakers else None)
