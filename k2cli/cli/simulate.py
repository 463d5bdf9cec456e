"""`k2 simulate binance|kraken`: serve a local exchange with injectable faults."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from k2cli.cli._output import print_json
from k2cli.cli.options import RICH_JSON, Format, format_option
from k2cli.jsonutil import dumps

app = typer.Typer(help="Serve a local Binance or Kraken exchange (real WebSocket protocol) from a tape, "
                       "optionally over TLS, with faults to inject. Prints the URL to stream from.",
                  no_args_is_help=True, add_completion=False)


def _make(exchange: str) -> Callable[..., None]:
    default_port_help = "Port to listen on (0 = a free port; the URL is printed)."

    def command(
        symbols: str = typer.Option(None, "--symbols", "-s", help="Comma-separated symbols (default: the "
                                    f"{exchange}_symbols setting)."),
        port: int = typer.Option(0, "--port", "-p", help=default_port_help),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
        rate: float = typer.Option(100.0, "--rate", "-r", help="Trades per second over all symbols; 0 = as fast "
                                   "as clients read."),
        seed: int = typer.Option(1, "--seed", help="Seed of the generated tape (same seed, same trades)."),
        tape: Path = typer.Option(None, "--tape", help="Serve the frames of a recorded file (one raw frame per "
                                  "line) instead of a generated tape."),
        record: Path = typer.Option(None, "--record", help="Append every generated trade to this JSONL file "
                                    "(symbol, seq, ts_us, price, qty, side)."),
        kraken_version: int = typer.Option(1, "--kraken-version", help="Kraken: WS API version served on paths "
                                           "other than /v2 (/v2 always serves v2)."),
        tls_cert: Path = typer.Option(None, "--tls-cert", help="Serve wss:// with this certificate (PEM)."),
        tls_key: Path = typer.Option(None, "--tls-key", help="Private key of --tls-cert (PEM)."),
        ping_interval: float = typer.Option(20.0, "--ping-interval", help="Server pings every S seconds "
                                            "(0 = none); unanswered for --ping-timeout closes the connection."),
        ping_timeout: float = typer.Option(60.0, "--ping-timeout", help="Seconds a client has to answer a ping."),
        drop_every: float = typer.Option(0.0, "--drop-every", help="Fault: drop each connection abruptly S "
                                         "seconds after it opened."),
        no_pong: bool = typer.Option(False, "--no-pong", help="Fault: never answer the client's pings."),
        stall_after: float = typer.Option(0.0, "--stall-after", help="Fault: stop sending anything S seconds "
                                          "after a connection opened (the connection stays open)."),
        garbage_every: int = typer.Option(0, "--garbage-every", help="Fault: after every N data frames send a "
                                          "bad frame (invalid JSON, missing field, unknown event, zero price)."),
        skip_ids_every: int = typer.Option(0, "--skip-ids-every", help="Fault: skip a trade id every N trades."),
        shutdown_every: float = typer.Option(0.0, "--shutdown-every", help="Fault (Binance): send serverShutdown "
                                             "S seconds after a connection opened, close it --shutdown-grace later."),
        shutdown_grace: float = typer.Option(5.0, "--shutdown-grace", help="Seconds between serverShutdown and "
                                             "the close."),
        lag_ms: float = typer.Option(0.0, "--lag-ms", help="Fault: each connection delivers with its own fixed "
                                     "delay, drawn from 0..N ms (connections drift apart)."),
        buffer_events: int = typer.Option(200_000, "--buffer", help="Events kept for slow clients; a client "
                                          "further behind is closed as a slow consumer."),
        url_file: Path = typer.Option(None, "--url-file", help="Write the URL to this file once listening."),
        output_format: Format = format_option(RICH_JSON, "rich (default) or json (a JSON line with the URL at "
                                              "start, the statistics at exit)."),
    ) -> None:
        from k2cli.exchanges.simulator import SimulatorConfig, run_simulator
        from k2cli.settings import load_settings

        settings = load_settings()
        chosen = tuple(s for s in (symbols.split(",") if symbols else getattr(settings, f"{exchange}_symbols"))
                       if s.strip())
        cfg = SimulatorConfig(
            exchange=exchange, symbols=chosen, host=host, port=port, rate=rate, seed=seed, tape_file=tape,
            record_file=record, kraken_version=kraken_version, tls_cert=tls_cert, tls_key=tls_key,
            ping_interval=ping_interval, ping_timeout=ping_timeout, drop_every=drop_every, no_pong=no_pong,
            stall_after=stall_after, garbage_every=garbage_every, skip_ids_every=skip_ids_every,
            shutdown_every=shutdown_every, shutdown_grace=shutdown_grace, buffer_events=buffer_events, lag_ms=lag_ms,
        )
        stats = run_simulator(cfg, lambda url, sim: _announce(url, sim, url_file, output_format))
        if output_format == "json":
            sys.stdout.write(dumps({"event": "stopped", "stats": stats.as_dict()}, display=True) + "\n")
        else:
            print_json(stats.as_dict()) if not sys.stdout.isatty() else _rich_summary(stats.as_dict())

    where = "combined @trade streams at /stream" if exchange == "binance" else "WS v1 at /, v2 at /v2"
    command.__doc__ = f"Serve a simulated {exchange.capitalize()} exchange until SIGTERM/SIGINT ({where})."
    return command


def _announce(url: str, sim: Any, url_file: Path | None, output_format: str) -> None:
    cfg = sim.cfg
    if url_file is not None:
        url_file.write_text(url + "\n")
    if output_format == "json":
        sys.stdout.write(dumps({"event": "listening", "url": url, "port": sim.port, "exchange": cfg.exchange,
                                     "symbols": list(cfg.symbols), "rate": cfg.rate}, display=True) + "\n")
    else:
        faults = [f"{k}={getattr(cfg, k)}" for k in ("drop_every", "no_pong", "stall_after", "garbage_every",
                                                    "skip_ids_every", "shutdown_every", "lag_ms") if getattr(cfg, k)]
        sys.stdout.write(f"k2 simulate: serving {cfg.exchange} on {url} symbols={','.join(cfg.symbols)} "
                         f"rate={cfg.rate:g}/s{' faults: ' + ' '.join(faults) if faults else ''}\n")
    sys.stdout.flush()


def _rich_summary(stats: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="k2 simulate", show_header=False)
    for key, value in stats.items():
        table.add_row(key, str(value))
    Console().print(table)


app.command("binance")(_make("binance"))
app.command("kraken")(_make("kraken"))
