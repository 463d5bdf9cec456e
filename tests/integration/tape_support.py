"""The complete-tape judge: what the simulator printed (its --record file) against what the Iceberg table holds.

The oracle is the simulator's record, never k2's own counters: per symbol, every trade id of the span (the
market's trades from its first print, which is the first collector's subscription, up to a mark taken while a
collector was still subscribed) must be in the table exactly once with its exact price and quantity.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import run_k2
from tests.faults.support import K2Process, consume, end_offsets, iceberg_columns, wait_caught_up
from tests.integration.stream_support import read_topic

GRACE_S = 1.5  # the least wait between the span's mark and the stop of the last collector


def rest_url(ws_url: str) -> str:
    """The simulator's REST base URL (same host and port as its WebSocket)."""
    scheme, rest = ws_url.split("://", 1)
    return f"{'https' if scheme == 'wss' else 'http'}://{rest.split('/', 1)[0]}"


def tape_lines(record: Path) -> list[dict[str, Any]]:
    """Every complete line of the simulator's record so far (a line being written is left out)."""
    if not record.exists():
        return []
    text = record.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def mark(record: Path) -> int:
    """The end of the span: how many trades the market has printed now."""
    return len(tape_lines(record))


def wait_printing(record: Path, at_least: int = 1, timeout: float = 30) -> None:
    """Wait until the market has printed (its clock starts with the first subscription)."""
    deadline = time.monotonic() + timeout
    while mark(record) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"the simulator printed fewer than {at_least} trades in {timeout}s")
        time.sleep(0.1)


def wait_delivered(topic: str, record: Path, span_end: int, timeout: float = 25) -> None:
    """Before stopping the last collector: give it time to deliver the span's last trade of each symbol (a stall
    or a backfill held up by REST faults may still be open at the mark). Only a wait: the judge decides."""
    last: dict[str, int] = {}
    for t in tape_lines(record)[:span_end]:
        last[t["symbol"]] = max(last.get(t["symbol"], -1), t["seq"])
    time.sleep(GRACE_S)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen: dict[str, int] = {}
        for _, r in read_topic(topic):
            seen[r["symbol"]] = max(seen.get(r["symbol"], -1), r["source_sequence"])
        if all(seen.get(symbol, -1) >= seq for symbol, seq in last.items()):
            return
        time.sleep(1)


@dataclass
class Verdict:
    """Per symbol and in total: trades in the span (expected), span ids in the table, span ids missing, ids on
    several rows, rows that are not the tape's trade with that id (value differs, or no such id), configured
    symbols the span lacks."""

    span: int = 0
    rows: int = 0
    present: int = 0
    missing: int = 0
    duplicated: int = 0
    wrong: int = 0
    span_ids: dict[str, tuple[int, int]] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    missing_ids: dict[str, list[int]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.wrong == 0 and not self.absent

    def figures(self) -> str:
        ids = ", ".join(f"{s} {a}..{b}" for s, (a, b) in sorted(self.span_ids.items()))
        return (f"span ids {ids}; trades expected {self.span}, in table {self.present} (rows {self.rows}), missing "
                f"{self.missing}, duplicated {self.duplicated}, wrong {self.wrong}"
                + (f", symbols absent {self.absent}" if self.absent else "")
                + (f" ({'; '.join(self.detail)})" if self.detail else ""))


def judge(record: Path, span_end: int, rows: list[dict[str, Any]], symbols: str) -> Verdict:
    """Compare the table's rows (symbol, source_sequence, price, quantity) with the tape's first span_end trades,
    per symbol, every one of `symbols` (comma-separated) present; rows after the span are allowed (the stop is
    not instantaneous) but must also be the tape's, once."""
    tape = tape_lines(record)
    span: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    every: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for n, t in enumerate(tape):
        every[t["symbol"]][t["seq"]] = t
        if n < span_end:
            span[t["symbol"]][t["seq"]] = t
    by_symbol: dict[str, Counter[int]] = defaultdict(Counter)
    v = Verdict(rows=len(rows), absent=[s for s in symbols.split(",") if not span.get(s)])
    for r in rows:
        by_symbol[r["symbol"]][r["source_sequence"]] += 1
        sent = every.get(r["symbol"], {}).get(r["source_sequence"])
        if sent is None or (Decimal(str(r["price"])), Decimal(str(r["quantity"]))) != \
                (Decimal(sent["price"]), Decimal(sent["qty"])):
            v.wrong += 1
            if len(v.detail) < 6:
                v.detail.append(f"wrong row {r['symbol']} {r['source_sequence']}")
    for symbol, trades in span.items():
        got = by_symbol.get(symbol, Counter())
        missing = sorted(seq for seq in trades if seq not in got)
        dups = sorted(seq for seq, n in got.items() if n > 1)
        v.span_ids[symbol] = (min(trades), max(trades))
        v.span += len(trades)
        v.present += len(trades) - len(missing)
        v.missing += len(missing)
        v.duplicated += sum(got[seq] - 1 for seq in dups)
        if missing:
            v.missing_ids[symbol] = missing
            v.detail.append(f"{symbol}: {len(missing)} missing, ids {_ranges(missing)}")
        if dups:
            v.detail.append(f"{symbol}: {len(dups)} ids on several rows, first {dups[:5]}")
    return v


def report(scenario: str, verdict: Verdict, backfilled: int, extra: str = "") -> None:
    """The scenario's figures in one line the lead can quote (`pytest -s` shows it; -rA too)."""
    print(f"\nCOMPLETE TAPE | {scenario} | {verdict.figures()}; trades backfilled {backfilled}"
          + (f" | {extra}" if extra else ""), flush=True)


def _ranges(ids: list[int], most: int = 6) -> str:
    """Consecutive ids as ranges, e.g. 3-9,15."""
    out: list[str] = []
    start = prev = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}-{prev}" if prev > start else str(start))
        if i is not None:
            start = prev = i
    return ",".join(out[:most]) + (" ..." if len(out) > most else "")


def stop_collector(proc: K2Process) -> dict[str, Any]:
    """SIGTERM a collector; its summary (everything it took delivered)."""
    proc.stop()
    summary = proc.summary()
    assert summary.get("status") == "interrupted", proc.stderr()[-2000:]
    assert summary["undelivered"] == 0 and summary["produce_errors"] == {}, summary
    return summary


def table_trades(env: dict[str, str], table: str) -> list[dict[str, Any]]:
    """The table's rows read with pyiceberg (the columns the judge needs)."""
    return iceberg_columns(env, table, "symbol", "source_sequence", "price", "quantity", "trade_id")


def consume_all(env: dict[str, str], topic: str, group: str, table: str, logdir: Path,
                running: K2Process | None = None, timeout: float = 90) -> dict[str, Any]:
    """Let a consumer (the running one, or a new one) reach the topic's current end, stop it; its statistics."""
    proc = running or consume(env, logdir, "--topics", topic, "--group", group, "--batch-size", "2000",
                              "--flush-interval", "0.5")
    try:
        wait_caught_up(env, table, end_offsets(topic), timeout, f"the consumer to reach the end of {topic}")
    finally:
        code = proc.stop()
    assert code in (0, 130), f"k2 consume exited {code}: {proc.stderr()[-2000:]}"
    return proc.summary()


def query_gaps(env: dict[str, str], table: str) -> tuple[int, dict[str, Any]]:
    """`k2 query gaps --table T --format json`: (exit code, report)."""
    proc = run_k2(["query", "gaps", "--table", table, "--format", "json"], env=env)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, {"stdout": proc.stdout, "stderr": proc.stderr}


def twice_delivered_s(topic: str, record: Path) -> tuple[int, float]:
    """Trades the topic holds more than once, and how long a stretch of the tape they cover (s, by the simulator's
    clock): with two collectors, how long both really delivered."""
    counts = Counter((r["symbol"], r["source_sequence"]) for _, r in read_topic(topic))
    at = {(t["symbol"], t["seq"]): t["ts_us"] for t in tape_lines(record)}
    times = sorted(at[k] for k, n in counts.items() if n > 1 and k in at)
    return len(times), (times[-1] - times[0]) / 1e6 if times else 0.0
