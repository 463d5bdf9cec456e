"""`k2 validate streaming`: connect, first trade, 10 valid v2 trades, rate and latency for one exchange.

seed 000, "WebSocket Streaming Validation": the quick validation and the expected-performance table, run
through `k2 stream` itself (into a scratch topic that is deleted afterwards) against the public exchange or
--url (e.g. a `k2 simulate` server).
"""

from __future__ import annotations

import time

from k2cli.checks.checklists import common, v2check
from k2cli.checks.context import Context, Options
from k2cli.checks.evaluate import percentile
from k2cli.checks.model import Checklist, Result, Status, Step
from k2cli.exchanges import registry


def _per_exchange(expectation: str, unit: str) -> str:
    """An expectation's default for every exchange, e.g. "10 s (A) / 30 s (B)"."""
    return " / ".join(f"{getattr(d.expectation, expectation):g} {unit} ({d.title})" for d in registry.all())


def source_url(ctx: Context) -> str:
    """The WebSocket URL under test: --url, else the exchange's configured URL."""
    return ctx.options.url or ctx.settings.exchange_url(ctx.options.exchange)


def measure_connect(ctx: Context) -> Result:
    """Time a WebSocket opening handshake (TCP, TLS with verification as configured, HTTP upgrade)."""
    from websockets.sync.client import connect

    from k2cli.exchanges.session import build_ssl_context

    url = source_url(ctx)
    desc = registry.get(ctx.options.exchange)  # its plan may put the subscription into the URL
    url = desc.plan((url,), desc.check_symbols(ctx.settings.exchange(desc.name).symbols)).urls[0]
    ssl_ctx = build_ssl_context(ctx.settings.ssl_verify, ctx.settings.ca_bundle) if url.startswith("wss") else None
    started = time.monotonic()
    try:
        with connect(url, ssl=ssl_ctx, open_timeout=15, close_timeout=2) as ws:
            elapsed = time.monotonic() - started
            tls = ws.socket.version() if hasattr(ws.socket, "version") else None
    except Exception as exc:  # refused, DNS, TLS verification, HTTP status: the measurement is "cannot connect"
        return Result.failed(f"cannot connect to {url}: {exc.__class__.__name__}: {exc}",
                             evidence=[f"ssl_verify={ctx.settings.ssl_verify}",
                                       f"ca_bundle={ctx.settings.ca_bundle or '(certifi)'}"])
    evidence = [f"url: {url}", f"TLS: {tls or 'none (ws://)'}"
                + (f", certificate verified={ctx.settings.ssl_verify}" if tls else "")]
    return ctx.check("streaming_connect_max_s", round(elapsed, 3), f"connected to {url} in {elapsed:.2f} s",
                     evidence=evidence)


def run_stream(ctx: Context) -> Result:
    """Stream the wanted number of trades through `k2 stream` into a scratch topic and read them back."""
    from k2cli.checks.probes import pipeline

    exchange = ctx.options.exchange
    wanted = int(ctx.threshold("streaming_min_valid_trades"))
    duration = ctx.threshold("streaming_run_max_s")
    ctx.progress(f"k2 stream {exchange}: waiting for {wanted} trades (at most {duration:g} s)")
    run = pipeline.stream_run(ctx, exchange, source_url(ctx), duration=duration, max_messages=wanted)
    records, errors, _ = pipeline.read_records(ctx, run.topic)
    ctx.state["stream"] = {"run": run, "records": [v2check.normalize(r) for r in records], "decode_errors": errors}
    evidence = [f"command: {run.completed.command}", f"exit code: {run.completed.returncode}",
                f"records in {run.topic}: {len(records)}"] + errors[:5]
    if run.completed.returncode != 0:
        return Result.failed(f"`k2 stream` exited {run.completed.returncode}: "
                             f"{run.completed.stderr.strip().splitlines()[-1:] or ['(no output)']}",
                             measured=len(records), unit="trades", evidence=evidence)
    return Result.passed(f"k2 stream produced {len(records)} records in {run.completed.duration:.1f} s",
                         measured=len(records), unit="trades", evidence=evidence)


def _records(ctx: Context) -> list[dict]:
    return ctx.state["stream"]["records"]


def measure_first_trade(ctx: Context) -> Result:
    """Seconds from starting `k2 stream` to the first trade's ingestion time."""
    records = _records(ctx)
    if not records:
        return Result.failed("no trade arrived", unit="s")
    run = ctx.state["stream"]["run"]
    first = min(r["ingestion_timestamp"] for r in records) / 1e6
    name = f"streaming_{ctx.options.exchange}_first_trade_max_s"
    return ctx.check(name, round(first - run.started_wall, 3),
                     f"first trade {first - run.started_wall:.2f} s after `k2 stream` started",
                     evidence=["measured from process start, so it includes k2's own start-up"])


def measure_trades(ctx: Context) -> Result:
    """How many of the records are valid v2 trades of this exchange."""
    exchange = ctx.options.exchange
    valid = [r for r in _records(ctx) if not v2check.problems(r, exchange)]
    examples = [f"{r['trade_id']} {r['symbol']} {r['side']} {r['quantity']} @ {r['price']}" for r in valid[:3]]
    return ctx.check("streaming_min_valid_trades", len(valid), f"{len(valid)} valid {exchange} trades",
                     evidence=examples)


def measure_compliance(ctx: Context) -> Result:
    """Percentage of records that meet the v2 schema and the seeds' exchange-specific rules."""
    exchange = ctx.options.exchange
    records = _records(ctx)
    decode_errors = ctx.state["stream"]["decode_errors"]
    total = len(records) + len(decode_errors)
    if not total:
        return Result.failed("no records to check", unit="%")
    bad = [(r.get("trade_id"), p) for r in records if (p := v2check.problems(r, exchange))]
    compliant = len(records) - len(bad)
    pct = round(100.0 * compliant / total, 2)
    evidence = [f"{tid}: {'; '.join(p)}" for tid, p in bad[:10]] + decode_errors[:5]
    return ctx.check("streaming_v2_compliance_min_pct", pct, f"{compliant} of {total} records are v2 compliant",
                     evidence=evidence)


def measure_rate(ctx: Context) -> Result:
    """Trades per second while streaming (ingestion span), against the exchange's expected range."""
    exchange = ctx.options.exchange
    stamps = sorted(r["ingestion_timestamp"] for r in _records(ctx))
    if len(stamps) < 2:
        return Result.failed("fewer than 2 trades: no rate", unit="trades/s")
    span = (stamps[-1] - stamps[0]) / 1e6
    rate = round((len(stamps) - 1) / span, 3) if span > 0 else float(len(stamps))
    low = ctx.check(f"streaming_{exchange}_rate_min_per_s", rate, f"{rate} trades/s over {span:.2f} s")
    if low.status is not Status.PASS:
        return low
    if not ctx.holds(f"streaming_{exchange}_rate_max_per_s", rate):
        return Result.warned(f"{rate} trades/s is above the expected range (a busy market or a fast simulator)",
                             measured=rate, unit="trades/s",
                             threshold=f"{ctx.describe(f'streaming_{exchange}_rate_min_per_s')} and "
                                       f"{ctx.describe(f'streaming_{exchange}_rate_max_per_s')}")
    return Result.passed(low.summary, measured=rate, unit="trades/s",
                         threshold=f"{ctx.describe(f'streaming_{exchange}_rate_min_per_s')} and "
                                   f"{ctx.describe(f'streaming_{exchange}_rate_max_per_s')}")


def measure_latency(ctx: Context) -> Result:
    """p95 of ingestion time minus exchange trade time."""
    lat = [(r["ingestion_timestamp"] - r["timestamp"]) / 1000 for r in _records(ctx)]
    if not lat:
        return Result.failed("no trades: no latency", unit="ms")
    p50, p95, top = percentile(lat, 50), percentile(lat, 95), max(lat)
    return ctx.check(f"streaming_{ctx.options.exchange}_latency_p95_max_ms", round(p95, 2),
                     f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {top:.1f} ms over {len(lat)} trades",
                     evidence=["latency = ingestion_timestamp - timestamp (exchange trade time)"])


def build(options: Options) -> Checklist:
    """The streaming checklist for one exchange."""
    ex = options.exchange
    run = ("streaming.run",)
    return Checklist(
        "streaming",
        f"WebSocket streaming validation: {ex}",
        f"Connect to {options.url or f'the public {ex} endpoint'}, stream trades through `k2 stream` into a scratch "
        "topic, and check count, v2 compliance, rate and latency against the seed's expected performance.",
        (
            common.broker_step("streaming.broker"),
            common.registry_step("streaming.registry"),
            Step("streaming.connect", "Connection successful",
                 "A WebSocket handshake (TLS verified for wss://) to the exchange completes within 5 s.",
                 measure_connect, thresholds=("streaming_connect_max_s",)),
            Step("streaming.run", "Trades streamed through k2 stream",
                 "`k2 stream` runs against the exchange into a scratch topic until it has 10 trades.",
                 run_stream, depends_on=("streaming.broker", "streaming.registry", "streaming.connect"),
                 thresholds=("streaming_min_valid_trades", "streaming_run_max_s")),
            Step("streaming.first-trade", "Time to first trade",
                 f"The first trade arrives within {_per_exchange('first_trade_max_s', 's')} of starting.",
                 measure_first_trade,
                 depends_on=run, thresholds=(f"streaming_{ex}_first_trade_max_s",)),
            Step("streaming.trades", "10 valid trades", "At least 10 trades decode and pass the v2 checks.",
                 measure_trades, depends_on=run, thresholds=("streaming_min_valid_trades",)),
            Step("streaming.v2-compliance", "100% v2 schema compliance",
                 "Every record meets the v2 schema and the seed's exchange rules (symbol format, trade_id prefix, "
                 "vendor_data keys, XBT normalised to BTC).", measure_compliance, depends_on=run,
                 thresholds=("streaming_v2_compliance_min_pct",)),
            Step("streaming.rate", "Message rate", "Trades per second are in the exchange's expected range.",
                 measure_rate, depends_on=run,
                 thresholds=(f"streaming_{ex}_rate_min_per_s", f"streaming_{ex}_rate_max_per_s")),
            Step("streaming.latency", "Message latency",
                 f"p95 of ingestion minus trade time is under {_per_exchange('latency_p95_max_ms', 'ms')}.",
                 measure_latency, depends_on=run, thresholds=(f"streaming_{ex}_latency_p95_max_ms",)),
        ),
        source=f"{common.SEED_CONSUMER} (WebSocket Streaming Validation)",
    )
