"""`k2 simulate VENUE`: serve a local exchange with injectable faults; one command per simulated venue."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from k2cli.cli._output import print_json
from k2cli.cli.options import RICH_JSON, Format, format_option
from k2cli.exchanges import registry
from k2cli.jsonutil import dumps
from k2cli.simulator.venues import load_venue

if TYPE_CHECKING:
    from k2cli.simulator.server import Simulator
    from k2cli.simulator.venues.base import Venue

_FAULTS = ("drop_every", "no_pong", "stall_after", "fault_cycle", "garbage_every", "skip_ids_every", "shutdown_every",
           "lag_ms", "rest_rate_limit", "rest_429_every", "rest_5xx_every", "rest_delay_ms")


def _either(titles: list[str]) -> str:
    """"A", "A or B", "A, B or C"."""
    return " or ".join([", ".join(titles[:-1]), titles[-1]] if len(titles) > 1 else titles)


app = typer.Typer(help=f"Serve a local {_either([d.title for d in registry.all()])} exchange (real "
                       "WebSocket protocol) from a tape, optionally over TLS, with faults to inject. Prints the URL "
                       "to stream from.",
                  no_args_is_help=True, add_completion=False)

Param = tuple[str, type, Any]  # parameter name (a SimulatorConfig field, or below), type, typer.Option


def _serving(venue: Venue) -> list[Param]:
    return [
        ("symbols", str, typer.Option(None, "--symbols", "-s", help="Comma-separated symbols (default: the "
                                      f"{venue.name}_symbols setting).")),
        ("port", int, typer.Option(0, "--port", "-p", help="Port to listen on (0 = a free port; the URL is printed).")),
        ("host", str, typer.Option("127.0.0.1", "--host", help="Address to bind.")),
        ("rate", float, typer.Option(100.0, "--rate", "-r", help="Trades per second over all symbols; 0 = as fast "
                                     "as clients read.")),
        ("seed", int, typer.Option(1, "--seed", help="Seed of the generated tape (same seed, same trades; the ids "
                                   "start at --first-id).")),
        ("first_id", int, typer.Option(0, "--first-id", help="Each symbol's first trade id (0 = the clock in µs, "
                                       "so a new run never repeats an earlier run's ids, as on a real exchange).")),
        ("tape_file", Path, typer.Option(None, "--tape", help="Serve the frames of a recorded file (one raw frame "
                                         "per line) instead of a generated tape.")),
        ("record_file", Path, typer.Option(None, "--record", help="Append every generated trade to this JSONL file "
                                           "(symbol, seq, ts_us, price, qty, side).")),
    ]


def _venue_options(venue: Venue) -> list[Param]:
    return [(o.name, type(o.default), typer.Option(o.default, o.flag, help=o.help)) for o in venue.options]


def _connection_and_faults() -> list[Param]:
    return [
        ("tls_cert", Path, typer.Option(None, "--tls-cert", help="Serve wss:// with this certificate (PEM).")),
        ("tls_key", Path, typer.Option(None, "--tls-key", help="Private key of --tls-cert (PEM).")),
        ("ping_interval", float, typer.Option(20.0, "--ping-interval", help="Server pings every S seconds "
                                              "(0 = none); unanswered for --ping-timeout closes the connection.")),
        ("ping_timeout", float, typer.Option(60.0, "--ping-timeout", help="Seconds a client has to answer a ping.")),
        ("drop_every", float, typer.Option(0.0, "--drop-every", help="Fault: drop each connection abruptly S "
                                           "seconds after it opened.")),
        ("no_pong", bool, typer.Option(False, "--no-pong", help="Fault: never answer the client's pings.")),
        ("stall_after", float, typer.Option(0.0, "--stall-after", help="Fault: stop sending anything S seconds "
                                            "after a connection opened (the connection stays open).")),
        ("fault_cycle", float, typer.Option(0.0, "--fault-cycle", help="Fault: S seconds after each connection "
                                            "opened, in turn per connection: drop it, stall it, stop answering its "
                                            "pings.")),
        ("garbage_every", int, typer.Option(0, "--garbage-every", help="Fault: after every N data frames send a "
                                            "bad frame (invalid JSON, missing field, unknown event, zero price).")),
        ("skip_ids_every", int, typer.Option(0, "--skip-ids-every", help="Fault: skip a trade id every N trades.")),
    ]


def _shutdown(venue: Venue) -> list[Param]:
    """The shutdown fault; hidden for a venue without a shutdown notice (the config check then refuses it)."""
    notice, hidden = venue.shutdown_notice or "", venue.shutdown_notice is None
    return [
        ("shutdown_every", float, typer.Option(0.0, "--shutdown-every", hidden=hidden, help=f"Fault ({venue.title}): "
                                               f"send {notice} S seconds after a connection opened, close it "
                                               "--shutdown-grace later.")),
        ("shutdown_grace", float, typer.Option(5.0, "--shutdown-grace", hidden=hidden, help=f"Seconds between "
                                               f"{notice} and the close.")),
    ]


def _rest() -> list[Param]:
    return [
        ("rest_history", int, typer.Option(1_000_000, "--rest-history", help="Trades kept per symbol for the REST "
                                           "trade-history endpoint; older ones are forgotten (REST answers then "
                                           "start at the oldest kept). 0 = none.")),
        ("rest_rate_limit", float, typer.Option(0.0, "--rest-rate-limit", help="REST requests per second (bursts "
                                                "of N); over it: the venue's 429 with Retry-After (0 = no limit).")),
        ("rest_429_every", int, typer.Option(0, "--rest-429-every", help="Fault: every Nth REST request answers "
                                             "429 with Retry-After: 1.")),
        ("rest_5xx_every", int, typer.Option(0, "--rest-5xx-every", help="Fault: every Nth REST request answers "
                                             "503, then 500, in turn.")),
        ("rest_delay_ms", float, typer.Option(0.0, "--rest-delay-ms", help="Fault: every REST answer waits N ms.")),
    ]


def _tail() -> list[Param]:
    return [
        ("lag_ms", float, typer.Option(0.0, "--lag-ms", help="Fault: each connection delivers with its own fixed "
                                       "delay, drawn from 0..N ms (connections drift apart).")),
        ("buffer_events", int, typer.Option(200_000, "--buffer", help="Events kept for slow clients; a client "
                                            "further behind is closed as a slow consumer.")),
        ("url_file", Path, typer.Option(None, "--url-file", help="Write the URL to this file once listening.")),
        ("output_format", Format, format_option(RICH_JSON, "rich (default) or json (a JSON line with the URL at "
                                                "start, the statistics at exit).")),
    ]


def _make(venue: Venue) -> Callable[..., None]:
    """The command of one venue: the common options with the venue's own in their place."""

    def command(**values: Any) -> None:
        _serve(venue, values)

    params = [*_serving(venue), *_venue_options(venue), *_connection_and_faults(), *_shutdown(venue), *_rest(),
              *_tail()]
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # typer reads the signature
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=kind)
         for name, kind, opt in params])
    command.__doc__ = f"Serve a simulated {venue.title} exchange until SIGTERM/SIGINT ({venue.summary})."
    return command


def _serve(venue: Venue, values: dict[str, Any]) -> None:
    from k2cli.settings import load_settings
    from k2cli.simulator.config import SimulatorConfig
    from k2cli.simulator.server import run_simulator

    symbols, url_file, output_format = values.pop("symbols"), values.pop("url_file"), values.pop("output_format")
    chosen = tuple(s for s in (symbols.split(",") if symbols else load_settings().exchange(venue.name).symbols)
                   if s.strip())
    options = {o.name: values.pop(o.name) for o in venue.options}
    cfg = SimulatorConfig(exchange=venue.name, symbols=chosen, options=options, **values)
    stats = run_simulator(cfg, lambda url, sim: _announce(url, sim, url_file, output_format))
    if output_format == "json":
        sys.stdout.write(dumps({"event": "stopped", "stats": stats.as_dict()}, display=True) + "\n")
    else:
        print_json(stats.as_dict()) if not sys.stdout.isatty() else _rich_summary(stats.as_dict())


def _announce(url: str, sim: Simulator, url_file: Path | None, output_format: str) -> None:
    cfg = sim.cfg
    if url_file is not None:
        url_file.write_text(url + "\n")
    if output_format == "json":
        sys.stdout.write(dumps({"event": "listening", "url": url, "port": sim.port, "exchange": cfg.exchange,
                                "symbols": list(cfg.symbols), "rate": cfg.rate}, display=True) + "\n")
    else:
        faults = [f"{k}={getattr(cfg, k)}" for k in _FAULTS if getattr(cfg, k)]
        sys.stdout.write(f"k2 simulate: serving {cfg.exchange} on {url} symbols={','.join(cfg.symbols)} "
                         f"rate={cfg.rate:g}/s{' faults: ' + ' '.join(faults) if faults else ''}\n")
    sys.stdout.flush()


def _rich_summary(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="k2 simulate", show_header=False)
    for key, value in stats.items():
        table.add_row(key, str(value))
    Console().print(table)


for _name in registry.names():
    app.command(_name)(_make(load_venue(_name)))
