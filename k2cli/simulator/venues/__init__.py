"""Simulated venues: one module per exchange holds everything protocol-specific; the core names none.

Adding a venue = one module here, named by its exchange descriptor's `simulator_module` (the descriptor's
line in k2cli.exchanges.registry is what makes `k2 simulate NAME` exist). Nothing else changes: the core
(k2cli.simulator: config, market, tape, server, connection, faults) and the command are generic; the
venue's title and default symbols come from its descriptor and settings.

The module defines `VENUE`, an instance of a `Venue` subclass (k2cli.simulator.venues.base), with:

  name                      the exchange's registry name ("binance"): command, SimulatorConfig.exchange
  summary                   what is served where, for the command's help ("combined @trade streams at /stream")
  url_path                  path of the URL printed once listening ("/stream"; "" for the root)
  multi_trade_events        True: a tape event (one frame) carries 1..3 trades of one symbol; False: one
  shutdown_notice           name of the venue's shutdown notice ("serverShutdown"), or None: the generic
                            --shutdown-every fault is then refused for this venue (its flags are hidden)
  options                   VenueOption(name, flag, default, help) for flags only this venue has; values
                            arrive in SimulatorConfig.options[name] (read them with base.option(...));
                            names must differ from SimulatorConfig's fields (they become the command's too)
  normalise_symbol(raw)     the served form of a --symbols entry; ValueError with one line if impossible
  check(cfg)                ConfigError (one line) for impossible values of its options
  route(path, cfg)          Route(dialect, symbols) for a request path (+ query), None = HTTP 400; symbols
                            are those the path itself subscribes (Binance's /stream?streams=...)
  rest_api(cfg)             a new RestApi (base.RestApi) serving the venue's public trade-history endpoint on
                            plain HTTP GETs (same port, TLS too), or None (the default) for no REST

A `RestApi` (one instance per simulator; it may keep state, e.g. Binance's used weight) answers over the
market's TradeHistory (k2cli.simulator.history: per symbol, the trades printed, with from_id / before_id /
after_id / latest / time lookups):

  answer(path, query, history) -> RestAnswer(status, body, headers) | None   None: not its path (404)
  error(status, message)    the venue's error shape for 400, 404, 429 (rate limit), its ban status, 5xx
  finish(answer, now)       headers every answer carries (Binance's X-MBX-USED-WEIGHT-1M)
  ban_status                status for a client that goes on within a 429's Retry-After (Binance: 418), or None

The core (k2cli.simulator.rest) applies --rest-rate-limit, the bans, --rest-429-every, --rest-5xx-every and
--rest-delay-ms before asking the venue, adds Retry-After, and counts answers by status in the stats.

A `Dialect` (base.Dialect; a stateless singleton, one per wire protocol: Binance combined/raw, Kraken
v1/v2) does the talking, through a `Link` to its connection that the core provides:

  render(event) -> str      the data frame of a tape event (event.symbol, event.trades: TapeTrade with ids,
                            price/qty as integers in 1e-8 units, ts_us, buy, market); cached per event under
                            the dialect's `key` (its class's qualified name, set by the base class), so it runs
                            once per event however many clients listen: the hot path
  garbage(n) -> str         the n-th bad frame: n % 4 = invalid JSON, missing field, unknown event, zero price
  heartbeat                 frame text sent when idle for heartbeat_interval, or None for no heartbeats
  shutdown_frame(ms) -> str the shutdown notice (only for a venue with shutdown_notice)
  async open(link)          connection opened: greet (link.send) and wait for a subscribe, or link.start()
                            at once (the default; the route's symbols are subscribed already)
  async on_message(link, msg)  a JSON object from the client: answer pings, handle subscribe requests:
                            cursor = link.anchor(); link.subscribe(symbol); link.recent_trades(symbol,
                            cursor) for a snapshot; await link.send([...replies, snapshots]); link.start()

The Link (base.Link): conn_id, served (the configured symbols), subscriptions (this connection's, in
subscription order), send(texts), anchor(), subscribe(symbol), recent_trades(symbol, before), start().
Dialects keep no per-connection state of their own: what a connection has subscribed is the Link's.

The core owns everything else: the market clock and buffer, the tape and tape files, the trade history, the
REST gate (rate limit, bans, faults), the WebSocket server (TLS, pings, refusing unrouted paths), delivery,
per-connection lag, and the faults (drops, stalls, no pong, garbage frames at their schedule, skipped ids,
shutdown timing, slow consumers), and the stats.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2cli.simulator.venues.base import Venue


def venue_names() -> tuple[str, ...]:
    """The names of the simulated venues (every registered exchange), in registration order."""
    from k2cli.exchanges import registry

    return registry.names()


def load_venue(name: str) -> Venue:
    """The venue of a registered exchange; an unknown name is a ConfigError naming the known ones."""
    from k2cli.exchanges import registry

    venue: Venue = importlib.import_module(registry.get(name).simulator_module).VENUE
    return venue
