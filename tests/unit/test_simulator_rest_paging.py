"""The simulator's REST trade history: the compact history, each venue's paging and clipping, the rate limit,
bans and injected faults on a fake clock."""

import json

from k2cli.simulator.config import SimulatorConfig, SimulatorStats
from k2cli.simulator.history import TradeHistory
from k2cli.simulator.rest import RestGate, RestService
from k2cli.simulator.tape import GeneratedTape, TapeTrade
from k2cli.simulator.venues import load_venue


def _market(symbols, n=300, skip=0, multi=False, limit=1_000_000):
    """A small market: n events of a generated tape, in a history; returns (history, printed trades)."""
    tape = GeneratedTape(symbols, seed=7, skip_ids_every=skip, multi=multi)
    history, printed = TradeHistory(symbols, limit), []
    for i in range(n):
        event = tape.next_event(1_700_000_000_000_000 + (i // 10))  # ten events share each clock reading
        history.add(event.trades)
        printed.extend(event.trades)
    return history, printed


def _api(exchange, symbols):
    return load_venue(exchange).rest_api(SimulatorConfig(exchange, symbols))


def _ids(trades, symbol):
    return [t.seq for t in trades if t.symbol == symbol]


def test_history_keeps_the_last_trades_and_forgets_the_rest():
    history, printed = _market(("BTCUSDT",), n=3000, limit=1000)
    btc = history.get("BTCUSDT")
    assert len(btc) == 1000 and history.forgotten == 2000
    assert [t.seq for t in btc.from_id(0, 5)] == _ids(printed, "BTCUSDT")[2000:2005]  # starts at the oldest kept
    assert [t.seq for t in btc.latest(3)] == _ids(printed, "BTCUSDT")[-3:]


def test_tape_times_rise_per_symbol():
    _, printed = _market(("BTCUSDT", "ETHUSDT"), n=500)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        times = [t.ts_us for t in printed if t.symbol == symbol]
        assert all(b > a for a, b in zip(times, times[1:], strict=False))


def test_binance_pages_by_from_id_over_the_whole_history_without_invented_ids():
    history, printed = _market(("BTCUSDT", "ETHUSDT"), skip=7)
    api = _api("binance", ("BTCUSDT", "ETHUSDT"))
    want = _ids(printed, "BTCUSDT")
    assert any(b - a == 2 for a, b in zip(want, want[1:], strict=False))  # the tape skipped ids
    got, from_id = [], want[0]
    while True:
        answer = api.answer("/api/v3/historicalTrades", {"symbol": "BTCUSDT", "fromId": str(from_id),
                                                           "limit": "40"}, history)
        assert answer is not None and answer.status == 200
        page = json.loads(answer.body)
        if not page:
            break
        assert len(page) <= 40
        got.extend(page)
        from_id = page[-1]["id"] + 1
    assert [t["id"] for t in got] == want
    first = next(t for t in printed if t.symbol == "BTCUSDT")
    assert got[0] == {"id": first.seq, "price": f"{first.price / 10**8:.8f}", "qty": f"{first.qty / 10**8:.8f}",
                      "quoteQty": got[0]["quoteQty"], "time": first.ts_us // 1000,
                      "isBuyerMaker": not first.buy, "isBestMatch": True}


def test_binance_clips_the_limit_and_answers_the_latest_without_from_id():
    history, printed = _market(("BTCUSDT",), n=1500)
    api = _api("binance", ("BTCUSDT",))
    latest = json.loads(api.answer("/api/v3/historicalTrades", {"symbol": "BTCUSDT"}, history).body)
    assert [t["id"] for t in latest] == _ids(printed, "BTCUSDT")[-500:]
    clipped = json.loads(api.answer("/api/v3/historicalTrades", {"symbol": "btcusdt", "fromId": "0",
                                                                 "limit": "5000"}, history).body)
    assert len(clipped) == 1000
    assert api.answer("/api/v3/historicalTrades", {"symbol": "NOPE"}, history).status == 400
    assert api.answer("/api/v3/historicalTrades", {"symbol": "BTCUSDT", "fromId": "x"}, history).status == 400
    assert api.answer("/api/v3/other", {}, history) is None
    weights = [dict(api.finish(api.error(429, "x"), 120.0).headers)["X-MBX-USED-WEIGHT-1M"] for _ in range(2)]
    assert weights == ["25", "50"]
    assert dict(api.finish(api.error(429, "x"), 180.0).headers)["X-MBX-USED-WEIGHT-1M"] == "25"  # a new minute


def test_kraken_pages_by_since_without_splitting_identical_trades():
    history, printed = _market(("BTC/USD", "ETH/USD"), multi=True)
    api = _api("kraken", ("BTC/USD", "ETH/USD"))
    btc = [t for t in printed if t.symbol == "BTC/USD"]
    assert any(a.ts_us == b.ts_us for a, b in zip(btc, btc[1:], strict=False))  # identical trades in one µs
    got, since = [], "0"
    while True:
        answer = api.answer("/0/public/Trades", {"pair": "XBTUSD", "since": since, "count": "7"}, history)
        body = json.loads(answer.body)
        assert answer.status == 200 and body["error"] == []
        rows = body["result"]["XXBTZUSD"]
        if not rows:
            assert body["result"]["last"] == since
            break
        got.extend(rows)
        since = body["result"]["last"]
    assert [r[6] for r in got] == [t.seq for t in btc]
    t = btc[0]
    assert got[0][:6] == [f"{t.price / 10**8:.5f}", f"{t.qty / 10**8:.8f}", got[0][2], "b" if t.buy else "s",
                          "m" if t.market else "l", ""]
    assert round(got[0][2] * 1_000_000) == t.ts_us


def test_kraken_pair_spellings_latest_and_errors():
    history, printed = _market(("BTC/USD",), n=1200, multi=True)
    api = _api("kraken", ("BTC/USD",))
    for pair in ("BTC/USD", "XBT/USD", "xbtusd", "XXBTZUSD"):
        body = json.loads(api.answer("/0/public/Trades", {"pair": pair}, history).body)
        assert [r[6] for r in body["result"]["XXBTZUSD"]] == [t.seq for t in printed][-1000:]
    bad = api.answer("/0/public/Trades", {"pair": "ETHUSD"}, history)
    assert bad.status == 400 and json.loads(bad.body) == {"error": ["EQuery:Unknown asset pair"]}
    assert json.loads(api.error(429, "x").body) == {"error": ["EGeneral:Too many requests"]}


def test_coinbase_pages_newest_first_with_its_cursors():
    history, printed = _market(("BTC-USD", "ETH-USD"), skip=5)
    api = _api("coinbase", ("BTC-USD", "ETH-USD"))
    want = _ids(printed, "BTC-USD")
    first = api.answer("/products/BTC-USD/trades", {"limit": "25"}, history)
    headers = dict(first.headers)
    page = json.loads(first.body)
    assert [t["trade_id"] for t in page] == want[::-1][:25]
    assert headers == {"CB-BEFORE": str(want[-1]), "CB-AFTER": str(want[-25])}
    got = list(page)
    while "CB-AFTER" in headers:
        answer = api.answer("/products/BTC-USD/trades", {"limit": "25", "after": headers["CB-AFTER"]}, history)
        headers = dict(answer.headers)
        got.extend(json.loads(answer.body))
    assert [t["trade_id"] for t in got] == want[::-1]
    newer = json.loads(api.answer("/products/BTC-USD/trades", {"limit": "3", "before": str(want[0])}, history).body)
    assert [t["trade_id"] for t in newer] == want[1:4][::-1]
    t = next(t for t in printed if t.symbol == "BTC-USD")
    assert got[-1]["side"] == ("sell" if t.buy else "buy") and got[-1]["size"] == f"{t.qty / 10**8:.8f}"
    assert api.answer("/products/NOPE-USD/trades", {}, history).status == 400
    assert api.answer("/products/BTC-USD/book", {}, history) is None


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_limit_answers_429_with_retry_after_and_bans_who_goes_on():
    clock = Clock()
    gate = RestGate(2, 0, 0, bans=True, clock=clock)
    assert [gate.decide("a") for _ in range(2)] == [("serve", 0)] * 2
    assert gate.decide("a") == ("rate_limited", 1)
    clock.now += 0.5
    assert gate.decide("a") == ("banned", 2)  # went on within Retry-After
    clock.now += 1.0
    assert gate.decide("a") == ("banned", 1)
    clock.now += 1.0
    assert gate.decide("a") == ("serve", 0)


def test_rate_limit_without_bans_refills():
    clock = Clock()
    gate = RestGate(1, 0, 0, bans=False, clock=clock)
    assert gate.decide("a") == ("serve", 0)
    assert gate.decide("a") == ("rate_limited", 1)
    assert gate.decide("a") == ("rate_limited", 1)  # no ban on a venue without one
    clock.now += 1.0
    assert gate.decide("a") == ("serve", 0)


def test_injected_faults_every_nth_request():
    gate = RestGate(0, 3, 2, bans=False, clock=Clock())
    verdicts = [gate.decide("a") for _ in range(8)]
    assert verdicts == [("serve", 0), ("server_error", 503), ("rate_limited", 1), ("server_error", 500),
                        ("serve", 0), ("rate_limited", 1), ("serve", 0), ("server_error", 503)]


def test_service_counts_answers_by_status():
    cfg = SimulatorConfig("binance", ("BTCUSDT",), rest_429_every=2)
    history, _ = _market(("BTCUSDT",), n=10)
    stats = SimulatorStats()
    service = RestService(cfg, load_venue("binance").rest_api(cfg), history, stats)
    answers = [service.answer("/api/v3/historicalTrades?symbol=BTCUSDT&limit=3", "c") for _ in range(2)]
    assert [a.status for a in answers] == [200, 429]
    assert dict(answers[1].headers)["Retry-After"] == "1" and json.loads(answers[1].body)["code"] == -1003
    assert service.answer("/nope", "d").status == 404
    assert stats.rest_requests == {"200": 1, "429": 1, "404": 1}


def test_identical_trades_keep_their_flags_through_the_history():
    history = TradeHistory(("BTCUSDT",), 10)
    trade = TapeTrade("BTCUSDT", 5, 10, 3 * 10**8, 4_999_999, True, True)
    history.add([trade, TapeTrade("BTCUSDT", 6, 10, 1, 1, False, False)])
    back = history.get("BTCUSDT").from_id(0, 5)
    assert [(t.seq, t.ts_us, t.price, t.qty, t.buy, t.market) for t in back] == [
        (5, 10, 3 * 10**8, 4_999_999, True, True), (6, 10, 1, 1, False, False)]
