"""The simulator's pure parts: fault timing, config checks, routes, the tape and market, each venue's frames
(read back by the real parsers) and handshakes (through a recording link)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from k2cli.errors import ConfigError
from k2cli.exchanges.base import ERROR_TYPES, FrameError
from k2cli.exchanges.binance import BinanceParser
from k2cli.exchanges.kraken import KrakenV1Parser, KrakenV2Parser
from k2cli.simulator.config import SimulatorConfig, SimulatorStats, check_config
from k2cli.simulator.faults import FaultSchedule
from k2cli.simulator.market import Market
from k2cli.simulator.tape import Event, GeneratedTape, TapeTrade, units, ws_text_frame
from k2cli.simulator.venues import binance, kraken, load_venue, venue_names
from k2cli.simulator.venues.base import Dialect
from tests.conftest import run_k2

NOW_US = 1_700_000_000_123_456


def _cfg(exchange: str = "binance", symbols: tuple[str, ...] = ("BTCUSDT",), **kw: Any) -> SimulatorConfig:
    return SimulatorConfig(exchange, symbols, **kw)


# Faults


def test_drop_and_stall_are_due_from_the_connection_age_drop_first():
    faults = FaultSchedule(_cfg(drop_every=5, stall_after=2), opened=100.0)
    assert faults.due(101.9) == []
    assert faults.due(102.0) == ["stall"]
    assert faults.due(105.0) == ["drop"]


def test_shutdown_notice_once_then_the_close_after_the_grace():
    faults = FaultSchedule(_cfg(shutdown_every=3, shutdown_grace=2), opened=0.0)
    assert faults.due(2.9) == []
    assert faults.due(3.0) == ["notice"]
    assert faults.due(4.0) == []
    assert faults.due(5.0) == ["close"]
    assert FaultSchedule(_cfg(shutdown_every=1, shutdown_grace=0), opened=0.0).due(1.0) == ["notice", "close"]


def test_fault_cycle_drops_stalls_and_mutes_the_connections_in_turn():
    kinds = [FaultSchedule(_cfg(fault_cycle=3), opened=0.0, number=n) for n in range(4)]
    assert [k.due(2.9) for k in kinds] == [[], [], [], []]
    assert [k.due(3.0) for k in kinds] == [["drop"], ["stall"], ["mute"], ["drop"]]
    assert kinds[2].due(4.0) == []  # muted once, its data goes on
    assert FaultSchedule(_cfg(), opened=0.0, number=1).due(100.0) == []


# Config


def test_symbols_are_normalised_and_deduplicated_in_the_venue_form():
    assert check_config(_cfg(symbols=(" btcusdt", "BTCUSDT", "ethusdt"))).symbols == ("BTCUSDT", "ETHUSDT")
    assert check_config(_cfg("kraken", ("xbt/usd", "BTC/USD", "XDG/EUR"))).symbols == ("BTC/USD", "DOGE/EUR")


@pytest.mark.parametrize(("cfg", "message"), [
    (_cfg(symbols=("XYZ",)), "--symbols: 'XYZ' does not end in a known quote asset"),
    (_cfg(symbols=()), "--symbols: give at least one symbol"),
    (_cfg(rate=-1), "--rate must be 0 (full speed) or more"),
    (_cfg("kraken", ("BTC/USD",), options={"kraken_version": 3}), "--kraken-version must be 1 or 2"),
    (_cfg(options={"kraken_version": 2}), "Binance has no option kraken_version"),
    (_cfg(tls_cert=Path("/c.pem")), "--tls-cert and --tls-key go together"),
    (_cfg("kraken", ("BTC/USD",), shutdown_every=3),
     "--shutdown-every is a Binance fault (serverShutdown); Kraken has no such notice"),
    (_cfg(tape_file=Path("/nonexistent/tape")), "--tape /nonexistent/tape: no such file"),
    (_cfg("nowhere"), "unknown exchange 'nowhere'"),
])
def test_impossible_configs_are_one_line(cfg, message):
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


# Routes


def test_binance_routes_its_two_stream_forms_and_refuses_the_rest():
    cfg = check_config(_cfg(symbols=("BTCUSDT", "ETHUSDT")))
    venue = load_venue("binance")
    assert venue.route("/stream?streams=btcusdt@trade/ethusdt@trade", cfg) == (binance.COMBINED,
                                                                              ("BTCUSDT", "ETHUSDT"))
    assert venue.route("/ws/ethusdt@trade", cfg) == (binance.RAW, ("ETHUSDT",))
    for refused in ("/", "/stream", "/stream?streams=xrpusdt@trade", "/ws/btcusdt@depth", "/other"):
        assert venue.route(refused, cfg) is None, refused


def test_kraken_serves_v2_on_v2_paths_and_the_configured_version_elsewhere():
    venue = load_venue("kraken")
    v1 = check_config(_cfg("kraken", ("BTC/USD",)))
    v2 = check_config(_cfg("kraken", ("BTC/USD",), options={"kraken_version": 2}))
    assert venue.route("/", v1) == (kraken.V1, ()) and venue.route("/v2", v1) == (kraken.V2, ())
    assert venue.route("/anything", v2) == (kraken.V2, ())


def test_every_registered_exchange_has_a_venue_of_its_name():
    assert {load_venue(name).name for name in venue_names()} == set(venue_names())


# Tape and market


def test_generated_tape_is_reproducible_and_ids_skip_when_asked():
    def seqs(skip: int) -> list[int]:
        tape = GeneratedTape(("BTCUSDT",), seed=4, skip_ids_every=skip)
        return [t.seq for _ in range(12) for t in tape.next_event(NOW_US).trades]

    assert seqs(0) == list(range(1_000_000, 1_000_012)) == seqs(0)
    assert seqs(4) == [1_000_000, 1_000_001, 1_000_002, 1_000_004, 1_000_005, 1_000_006, 1_000_007, 1_000_009,
                       1_000_010, 1_000_011, 1_000_012, 1_000_014]  # every 4th trade skips an id


def test_multi_trade_tape_puts_one_to_three_trades_of_one_symbol_in_an_event():
    tape = GeneratedTape(("BTC/USD", "ETH/USD"), seed=2, multi=True)
    events = [tape.next_event(NOW_US) for _ in range(300)]
    assert {len(e.trades) for e in events} == {1, 2, 3}
    assert all(len({t.symbol for t in e.trades}) == 1 and e.trades[0].symbol == e.symbol for e in events)


def test_snapshot_takes_whole_events_of_the_symbol_up_to_fifty_trades():
    async def main() -> Market:
        market = Market(check_config(_cfg("kraken", ("BTC/USD", "ETH/USD"), rate=0)), SimulatorStats(), True)
        market.demand(400)
        return market

    market = asyncio.run(main())
    trades = market.recent_trades("ETH/USD", market.head)
    assert 47 <= len(trades) <= 50 and {t.symbol for t in trades} == {"ETH/USD"}
    every = [t for e in market.events if e.symbol == "ETH/USD" for t in e.trades]
    assert trades == every[-len(trades):]
    assert market.recent_trades("ETH/USD", 0) == []


def test_text_frames_carry_the_rfc6455_length_forms():
    for size, header in ((125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (65536, b"\x81\x7f" + (65536).to_bytes(8))):
        frame = ws_text_frame("x" * size)
        assert frame.startswith(header) and len(frame) == len(header) + size


# Frames, read back by the exchanges' parsers


DIALECTS = [(binance.COMBINED, BinanceParser(), ("BTCUSDT", "ETHBTC"), False, 1000),  # trade times in ms
            (binance.RAW, BinanceParser(), ("BTCUSDT",), False, 1000),
            (kraken.V1, KrakenV1Parser(), ("BTC/USD", "DOGE/EUR"), True, 1),
            (kraken.V2, KrakenV2Parser(), ("BTC/USD", "ETH/USD"), True, 1)]


@pytest.mark.parametrize(("dialect", "parser", "symbols", "multi", "time_unit"), DIALECTS)
def test_frames_parse_back_to_the_tape_trades(dialect: Dialect, parser, symbols, multi, time_unit):
    tape = GeneratedTape(symbols, seed=7, multi=multi)
    for _ in range(200):
        event = tape.next_event(NOW_US)
        frame = event.frame(dialect)
        assert event.frame(dialect) is frame and frame == ws_text_frame(event.text(dialect))  # rendered once
        if dialect is binance.RAW:
            continue  # the stream parser reads combined frames; the raw payload is their "data" member
        records = parser.parse(event.text(dialect), 1).trades
        assert [(r["price"], r["quantity"], r["timestamp"]) for r in records] == \
            [(Decimal(units(t.price, 8)), Decimal(units(t.qty, 8)), t.ts_us // time_unit * time_unit)
             for t in event.trades]


@pytest.mark.parametrize(("dialect", "parser", "symbols", "multi", "time_unit"), DIALECTS)
def test_garbage_frames_yield_no_trades(dialect: Dialect, parser, symbols, multi, time_unit):
    def outcome(text: str) -> Any:
        try:
            return parser.parse(text, 1).trades
        except FrameError as exc:
            return exc.error_type

    outcomes = [outcome(dialect.garbage(n)) for n in range(8)]
    assert outcomes[0] == "invalid_json" and outcomes[:4] == outcomes[4:]  # four kinds, in turn
    assert all(o == [] or o in ERROR_TYPES for o in outcomes), outcomes


def test_binance_shutdown_notice_in_both_stream_forms():
    assert binance.COMBINED.shutdown_frame(5) == '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":5}}'
    assert binance.RAW.shutdown_frame(5) == '{"e":"serverShutdown","E":5}'
    assert BinanceParser().parse(binance.COMBINED.shutdown_frame(5), 1).kind == "shutdown"


# Handshakes, through a link that records what the dialect does


class RecordingLink:
    """A Link over a fixed market position: records sends, subscriptions and starts."""

    def __init__(self, served: tuple[str, ...], recent: dict[str, list[TapeTrade]]) -> None:
        self.served = served
        self.conn_id = 7
        self.recent = recent
        self.sent: list[str] = []
        self.subscriptions: tuple[str, ...] = ()
        self.started = False

    async def send(self, texts: list[str]) -> None:
        self.sent.extend(texts)

    def anchor(self) -> int:
        return 10

    def subscribe(self, symbol: str) -> None:
        self.subscriptions = (*self.subscriptions, symbol)

    def recent_trades(self, symbol: str, before: int) -> list[TapeTrade]:
        return self.recent.get(symbol, []) if before == 10 else []

    def start(self) -> None:
        self.started = True


def _talk(dialect: Dialect, link: RecordingLink, *messages: dict[str, Any]) -> None:
    async def main() -> None:
        await dialect.open(link)
        for msg in messages:
            await dialect.on_message(link, msg)

    asyncio.run(main())


def test_binance_starts_at_once_and_answers_requests_without_changing_anything():
    link = RecordingLink(("BTCUSDT",), {})
    _talk(binance.COMBINED, link, {"method": "SUBSCRIBE", "params": ["x@trade"], "id": 3}, {"method": "OTHER"})
    assert link.started and link.subscriptions == () and link.sent == ['{"result": null, "id": 3}']


def test_kraken_v1_greets_then_subscribes_known_pairs_with_a_snapshot():
    trade = TapeTrade("BTC/USD", 1, NOW_US, 6_500_000_000_000, 10**8, True, False)
    link = RecordingLink(("BTC/USD",), {"BTC/USD": [trade]})
    _talk(kraken.V1, link, {"event": "ping", "reqid": 1},
          {"event": "subscribe", "pair": ["XBT/USD", "FOO/BAR"], "reqid": 2})
    status, pong, ok, refused, snapshot = link.sent
    assert '"systemStatus"' in status and '"connectionID": 7' in status and pong == '{"event": "pong", "reqid": 1}'
    assert '"status": "subscribed"' in ok and '"pair": "XBT/USD"' in ok
    assert "Currency pair not supported FOO/BAR" in refused
    assert snapshot == kraken.V1.render(Event("BTC/USD", [trade]))
    assert link.subscriptions == ("BTC/USD",) and link.started


def test_kraken_v2_snapshot_only_when_asked():
    trade = TapeTrade("ETH/USD", 5, NOW_US, 350_000_000_000, 2 * 10**7, False, True)
    link = RecordingLink(("ETH/USD",), {"ETH/USD": [trade]})
    _talk(kraken.V2, link, {"method": "subscribe", "params": {"symbol": ["ETH/USD"], "snapshot": False}})
    assert len(link.sent) == 2 and '"snapshot": false' in link.sent[1]
    link = RecordingLink(("ETH/USD",), {"ETH/USD": [trade]})
    _talk(kraken.V2, link, {"method": "subscribe", "params": {"symbol": ["eth/usd"]}})
    assert link.sent[2].startswith('{"channel":"trade","type":"snapshot","data":[{"symbol":"ETH/USD"')
    assert KrakenV2Parser().parse(link.sent[2], 1).trades[0]["quantity"] == Decimal("0.2")


# The command


def test_each_venue_command_lists_only_its_own_flags(k2_env):
    kraken_help = run_k2(["simulate", "kraken", "--help"], env=k2_env).stdout
    binance_help = run_k2(["simulate", "binance", "--help"], env=k2_env).stdout
    assert "--kraken-version" in kraken_help and "--shutdown-every" not in kraken_help
    assert "--shutdown-every" in binance_help and "--shutdown-grace" in binance_help
    assert "--kraken-version" not in binance_help
