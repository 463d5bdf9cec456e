"""A local exchange: Binance's combined trade streams or Kraken's WS v1/v2, served over ws:// or wss://
from a tape, with faults to inject.

All connections see one market: from the first subscription on, the tape advances at `rate` trades/s
whether or not anyone listens (rate 0: as fast as the fastest client reads), and every connection
receives the events from the moment it subscribed (Kraken: plus a snapshot of the pair's last trades).
A client that falls more than `buffer_events` behind is closed as a slow consumer, as a real exchange would.

Faults (per connection, timed from when it opened): drop_every (abrupt close, no close frame), no_pong
(WebSocket pings are not answered), stall_after (send nothing more, connection kept open),
garbage_every (after every N data frames, one bad frame: invalid JSON, missing field, unknown event,
zero price, in turn), skip_ids_every (tape-wide id gaps), shutdown_every (Binance serverShutdown, then
close after shutdown_grace), lag_ms (each connection delivers with its own delay, so two connections are
never in step, as with real exchange front ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from k2cli.errors import ConfigError
from k2cli.exchanges.symbols import UnknownSymbol, split_binance_symbol, split_kraken_pair
from k2cli.exchanges.tape import (
    CHANNEL_ID,
    Event,
    GeneratedTape,
    kraken2_trade,
    read_tape_file,
    record_line,
    rfc3339,
    ws_text_frame,
)

log = logging.getLogger("k2.simulate")
SNAPSHOT_TRADES = 50
_SEND_BATCH = 256


@dataclass(frozen=True)
class SimulatorConfig:
    """What to serve and which faults to inject."""

    exchange: str  # binance | kraken
    symbols: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 0
    rate: float = 100.0  # trades per second, 0 = as fast as the clients read
    seed: int = 1
    tape_file: Path | None = None
    record_file: Path | None = None
    kraken_version: int = 1  # the protocol served on paths other than /v2
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ping_interval: float = 20.0  # server pings (0 = none); the client must answer within ping_timeout
    ping_timeout: float = 60.0
    heartbeat_interval: float = 1.0  # Kraken heartbeat when idle
    buffer_events: int = 200_000
    drop_every: float = 0.0
    no_pong: bool = False
    stall_after: float = 0.0
    garbage_every: int = 0
    skip_ids_every: int = 0
    shutdown_every: float = 0.0
    shutdown_grace: float = 5.0
    lag_ms: float = 0.0  # each connection gets a fixed delivery delay drawn from 0..lag_ms (connections drift apart)


@dataclass
class SimulatorStats:
    """Counters of one simulator run."""

    connections: int = 0
    open_connections: int = 0
    events: int = 0
    trades: int = 0
    frames_sent: int = 0
    garbage_sent: int = 0
    drops: int = 0
    shutdowns_sent: int = 0
    slow_consumers: int = 0
    refused: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out = {k: v for k, v in self.__dict__.items() if k != "started"}
        out["uptime_seconds"] = round(time.monotonic() - self.started, 3)
        return out


def check_config(cfg: SimulatorConfig) -> SimulatorConfig:
    """Normalise the symbols and reject impossible combinations with one clear line."""
    if cfg.exchange not in ("binance", "kraken"):
        raise ConfigError(f"unknown exchange {cfg.exchange!r} (binance or kraken)")
    symbols = []
    for raw in cfg.symbols:
        try:
            if cfg.exchange == "binance":
                split_binance_symbol(raw.strip().upper())
                symbols.append(raw.strip().upper())
            else:
                base, quote = split_kraken_pair(raw.strip().upper())
                symbols.append(f"{base}/{quote}")
        except UnknownSymbol as exc:
            raise ConfigError(f"--symbols: {exc}") from None
    if not symbols:
        raise ConfigError("--symbols: give at least one symbol")
    if cfg.rate < 0:
        raise ConfigError("--rate must be 0 (full speed) or more")
    if cfg.kraken_version not in (1, 2):
        raise ConfigError("--kraken-version must be 1 or 2")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if cfg.shutdown_every and cfg.exchange != "binance":
        raise ConfigError("--shutdown-every is a Binance fault (serverShutdown); Kraken has no such notice")
    if cfg.tape_file is not None and not Path(cfg.tape_file).is_file():
        raise ConfigError(f"--tape {cfg.tape_file}: no such file")
    if cfg.tape_file is not None and cfg.skip_ids_every:
        raise ConfigError("--skip-ids-every works on a generated tape, not on --tape")
    from dataclasses import replace

    return replace(cfg, symbols=tuple(dict.fromkeys(symbols)))


class Market:
    """The shared tape: events in a ring with global indices, advanced by rate or by demand."""

    def __init__(self, cfg: SimulatorConfig, stats: SimulatorStats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.events: deque[Event] = deque()
        self.base = 0  # global index of events[0]
        self.changed = asyncio.Event()
        self._generated_trades = 0
        self._t0: float | None = None  # the clock starts with the first subscriber (a file tape plays from its start)
        self._file: Iterator[Event] | None = iter(read_tape_file(cfg.tape_file)) if cfg.tape_file else None
        self._tape = None if cfg.tape_file else GeneratedTape(cfg.exchange, cfg.symbols, cfg.seed,
                                                             cfg.skip_ids_every)
        self._exhausted = False
        self._record: TextIO | None = (open(cfg.record_file, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
                                       if cfg.record_file else None)

    @property
    def head(self) -> int:
        """Global index of the next event."""
        return self.base + len(self.events)

    def _append(self, n: int) -> int:
        """Generate up to n more events; returns how many were added."""
        added = 0
        now_us = time.time_ns() // 1000
        while added < n and not self._exhausted:
            if self._file is not None:
                event = next(self._file, None)
                if event is None:
                    self._exhausted = True
                    log.info("tape file finished after %d frames", self.head)
                    break
            else:
                event = self._tape.next_event(now_us)  # type: ignore[union-attr]
            event.at = time.monotonic()
            self.events.append(event)
            added += 1
            self._generated_trades += max(1, len(event.trades))
            self.stats.events += 1
            self.stats.trades += len(event.trades)
            if self._record is not None:
                for t in event.trades:
                    self._record.write(record_line(t) + "\n")
        overflow = len(self.events) - self.cfg.buffer_events
        for _ in range(max(0, overflow)):
            self.events.popleft()
            self.base += 1
        if added:
            self.changed.set()
            self.changed = asyncio.Event()
        return added

    def open(self) -> None:
        """A client subscribed: start the market clock if it is not running yet."""
        if self._t0 is None:
            self._t0 = time.monotonic()

    def due(self) -> int:
        """How many trades the clock allows beyond those generated (rate mode)."""
        if self._t0 is None:
            return 0
        return int((time.monotonic() - self._t0) * self.cfg.rate) - self._generated_trades

    def demand(self, n: int) -> None:
        """Full-speed mode: a client wants more events."""
        if self.cfg.rate == 0:
            self._append(n)

    async def run_clock(self) -> None:
        """Rate mode: add the trades due every few milliseconds."""
        if self.cfg.rate == 0:
            return
        tick = max(0.002, min(0.05, 1.0 / self.cfg.rate))
        while True:
            await asyncio.sleep(tick)
            due = self.due()
            while due > 0 and not self._exhausted:
                before = self._generated_trades
                self._append(1 if due < 4 else max(1, due // 3))
                due -= self._generated_trades - before
            if self._record is not None:
                self._record.flush()

    def since(self, cursor: int, limit: int) -> list[Event]:
        """Events from global index `cursor` on (at most `limit`)."""
        start = cursor - self.base
        stop = min(len(self.events), start + limit)
        return [self.events[i] for i in range(start, stop)]

    def recent_trades(self, symbol: str, before: int, limit: int = SNAPSHOT_TRADES) -> list[Any]:
        """The last trades of a symbol in whole events before global index `before` (Kraken snapshot)."""
        picked: list[list[Any]] = []
        total = 0
        i = min(before, self.head) - self.base - 1
        while i >= 0 and total < limit:
            event = self.events[i]
            if event.symbol == symbol:
                if total + len(event.trades) > limit:
                    break
                picked.append(event.trades)
                total += len(event.trades)
            i -= 1
        return [t for trades in reversed(picked) for t in trades]

    def close(self) -> None:
        """Flush and close the record file."""
        if self._record is not None:
            self._record.close()
            self._record = None


def _garbage(protocol: str, n: int) -> str:
    """The n-th bad frame: invalid JSON, missing field, unknown event, zero price, in turn."""
    kind = n % 4
    if protocol.startswith("binance"):
        return ('{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTC',
                '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"q":"1.0","T":1,"m":true}}',
                '{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT"}}',
                '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"0.00000000",'
                '"q":"1.0","T":1,"m":true,"M":true}}')[kind]
    if protocol == "kraken1":
        return ('[337,[["1.0","1.0"',
                '[337,[["1.0","1.0","1.5"]],"trade","XBT/USD"]',
                '{"event":"surprise"}',
                '[337,[["0.00000","1.0","1700000000.000001","b","l",""]],"trade","XBT/USD"]')[kind]
    return ('{"channel":"trade","data":[{"symbol"',
            '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy"}]}',
            '{"channel":"book","type":"update","data":[]}',
            '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":0,"qty":1,'
            '"ord_type":"limit","trade_id":1,"timestamp":"2024-01-01T00:00:00.000000Z"}]}')[kind]


def _now_rfc() -> str:
    return rfc3339(time.time_ns() // 1000)


class Simulator:
    """The WebSocket server of a simulated exchange."""

    def __init__(self, cfg: SimulatorConfig) -> None:
        self.cfg = check_config(cfg)
        self.stats = SimulatorStats()
        self.market: Market | None = None
        self.port: int | None = None
        self.url: str = ""

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.cfg.tls_cert:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(str(self.cfg.tls_cert), str(self.cfg.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-cert/--tls-key cannot be loaded: {exc}") from None
        return ctx

    def _protocol_of(self, path: str) -> tuple[str, tuple[str, ...]] | None:
        """(protocol, symbols) for a request path, or None when it must be refused."""
        parts = urlsplit(path)
        if self.cfg.exchange == "kraken":
            version = 2 if parts.path.rstrip("/").endswith("/v2") else self.cfg.kraken_version
            return f"kraken{version}", ()
        if parts.path.startswith("/ws/"):
            streams = [parts.path[4:]]
            protocol = "binance-raw"
        elif parts.path.rstrip("/") == "/stream":
            streams = "/".join(parse_qs(parts.query).get("streams", [""])).split("/")
            protocol = "binance"
        else:
            return None
        symbols = []
        for stream in streams:
            name, _, kind = stream.partition("@")
            if kind != "trade" or name.upper() not in self.cfg.symbols:
                return None
            symbols.append(name.upper())
        return protocol, tuple(symbols)

    def _process_request(self, connection: Any, request: Any) -> Any:
        if self._protocol_of(request.path) is None:
            self.stats.refused += 1
            return connection.respond(HTTPStatus.BAD_REQUEST, f"Invalid request: {request.path}\n")
        return None

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> SimulatorStats:
        """Serve until `stop` is set; `ready` is set once listening (self.url is known then)."""
        from websockets.asyncio.server import ServerConnection, serve

        cfg = self.cfg
        self.market = Market(cfg, self.stats)
        create_connection = _no_pong_connection_class() if cfg.no_pong else ServerConnection
        async with serve(
            self._handle, cfg.host, cfg.port, ssl=self._ssl(), compression=None,
            ping_interval=cfg.ping_interval or None, ping_timeout=cfg.ping_timeout if cfg.ping_interval else None,
            process_request=self._process_request, create_connection=create_connection, max_queue=64,
        ) as server:
            sock = next(iter(server.sockets))
            self.port = sock.getsockname()[1]
            scheme = "wss" if cfg.tls_cert else "ws"
            path = "/stream" if cfg.exchange == "binance" else ""
            self.url = f"{scheme}://{cfg.host}:{self.port}{path}"
            clock = asyncio.create_task(self.market.run_clock())
            if ready is not None:
                ready.set()
            try:
                await stop.wait()
            finally:
                clock.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clock
                self.market.close()
        return self.stats

    async def _handle(self, ws: Any) -> None:
        protocol, symbols = self._protocol_of(ws.request.path) or ("", ())
        self.stats.connections += 1
        self.stats.open_connections += 1
        client = _Client(self, ws, protocol, symbols)
        try:
            await client.run()
        finally:
            self.stats.open_connections -= 1


def _no_pong_connection_class() -> type:
    """A ServerConnection that never answers pings (the no_pong fault)."""
    from websockets.asyncio.server import ServerConnection
    from websockets.frames import Opcode

    class NoPongConnection(ServerConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            send_frame = self.protocol.send_frame

            def drop_pongs(frame: Any) -> None:
                if frame.opcode is not Opcode.PONG:
                    send_frame(frame)

            self.protocol.send_frame = drop_pongs  # type: ignore[method-assign]

    return NoPongConnection


class _Client:
    """One connection: subscription, sending from the market, heartbeats and faults."""

    def __init__(self, sim: Simulator, ws: Any, protocol: str, symbols: tuple[str, ...]) -> None:
        self.sim = sim
        self.ws = ws
        self.protocol = protocol
        self.subscribed: set[str] = set(symbols)
        self.cursor: int | None = None
        self.opened = time.monotonic()
        self.last_sent = self.opened
        self.data_frames = 0
        self.garbage_n = 0
        self.shutdown_at: float | None = None
        self.started = asyncio.Event()
        self.lag = random.uniform(0, sim.cfg.lag_ms / 1000.0) if sim.cfg.lag_ms else 0.0

    async def send(self, texts: list[str]) -> None:
        """Send frames in one write when the library allows it (much cheaper than one send() per frame)."""
        if not texts:
            return
        ws = self.ws
        if hasattr(ws, "send_context") and hasattr(ws.protocol, "send_text"):
            async with ws.send_context():
                for text in texts:
                    ws.protocol.send_text(text.encode())
        else:  # pragma: no cover - older/newer websockets without send_context
            for text in texts:
                await ws.send(text)
        self.sim.stats.frames_sent += len(texts)
        self.last_sent = time.monotonic()

    async def send_frames(self, frames: list[bytes]) -> None:
        """Send ready-made text frames (Event.frame) in one write, with the library's state checks and
        flow control (send_context); compression is off on this server, so a plain frame is what it would
        have written itself."""
        if not frames:
            return
        ws = self.ws
        if hasattr(ws, "send_context") and hasattr(ws, "transport"):
            async with ws.send_context():
                ws.transport.write(b"".join(frames))
        else:  # pragma: no cover
            raise RuntimeError("this websockets version has no send_context")
        self.sim.stats.frames_sent += len(frames)
        self.last_sent = time.monotonic()

    async def run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        sender = asyncio.create_task(self._sender())
        try:
            if self.protocol.startswith("kraken"):
                await self._greet()
            else:
                self._start()
            async for message in self.ws:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sender

    def _start(self) -> None:
        assert self.sim.market is not None
        self.sim.market.open()
        if self.cursor is None:
            self.cursor = self.sim.market.head
        self.started.set()

    async def _greet(self) -> None:
        if self.protocol == "kraken1":
            await self.send([json.dumps({"connectionID": id(self), "event": "systemStatus", "status": "online",
                                         "version": "1.9.1"})])
        else:
            await self.send([json.dumps({"channel": "status", "type": "update", "data": [{
                "api_version": "v2", "connection_id": id(self), "system": "online", "version": "2.0.0"}]})])

    async def _on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if self.protocol.startswith("binance"):
            if msg.get("method") in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"):
                await self.send([json.dumps({"result": None, "id": msg.get("id")})])
            return
        if self.protocol == "kraken1":
            if msg.get("event") == "ping":
                await self.send([json.dumps({"event": "pong", "reqid": msg.get("reqid")})])
            elif msg.get("event") == "subscribe":
                await self._subscribe([str(p) for p in msg.get("pair") or []], msg.get("reqid"))
            return
        if msg.get("method") == "ping":
            await self.send([json.dumps({"method": "pong", "req_id": msg.get("req_id"), "time_in": _now_rfc(),
                                         "time_out": _now_rfc()})])
        elif msg.get("method") == "subscribe":
            params = msg.get("params") or {}
            await self._subscribe([str(p) for p in params.get("symbol") or []], msg.get("req_id"),
                                  snapshot=params.get("snapshot", True) is not False)

    async def _subscribe(self, pairs: list[str], req_id: Any, snapshot: bool = True) -> None:
        market = self.sim.market
        assert market is not None
        cursor = market.head if self.cursor is None else self.cursor
        replies, snapshots = [], []
        for pair in pairs:
            try:
                base, quote = split_kraken_pair(pair.upper())
                known = f"{base}/{quote}" in self.sim.cfg.symbols
            except UnknownSymbol:
                known = False
            normal = f"{base}/{quote}" if known else pair
            if self.protocol == "kraken1":
                if not known:
                    replies.append(json.dumps({"errorMessage": f"Currency pair not supported {pair}",
                                               "event": "subscriptionStatus", "pair": pair, "status": "error",
                                               "subscription": {"name": "trade"}, "reqid": req_id}))
                    continue
                replies.append(json.dumps({"channelID": CHANNEL_ID, "channelName": "trade",
                                           "event": "subscriptionStatus", "pair": pair, "status": "subscribed",
                                           "subscription": {"name": "trade"}, "reqid": req_id}))
            else:
                if not known:
                    replies.append(json.dumps({"error": f"Currency pair not supported {pair}", "method": "subscribe",
                                               "req_id": req_id, "success": False, "symbol": pair,
                                               "time_in": _now_rfc(), "time_out": _now_rfc()}))
                    continue
                replies.append(json.dumps({"method": "subscribe", "req_id": req_id, "success": True,
                                           "result": {"channel": "trade", "snapshot": snapshot, "symbol": normal},
                                           "time_in": _now_rfc(), "time_out": _now_rfc()}))
            self.subscribed.add(normal)
            if snapshot and market._file is None:
                trades = market.recent_trades(normal, cursor)
                if trades:
                    snapshots.append(self._snapshot_frame(normal, trades))
        self.cursor = cursor
        await self.send(replies + snapshots)
        market.open()
        self.started.set()

    def _snapshot_frame(self, symbol: str, trades: list[Any]) -> str:
        if self.protocol == "kraken1":
            return Event(symbol, trades).text("kraken1")
        return f'{{"channel":"trade","type":"snapshot","data":[{",".join(kraken2_trade(t) for t in trades)}]}}'

    async def _sender(self) -> None:
        """Send market events to this client, with heartbeats and faults."""
        cfg = self.sim.cfg
        market = self.sim.market
        assert market is not None
        await self.started.wait()
        kraken = self.protocol.startswith("kraken")
        while True:
            now = time.monotonic()
            age = now - self.opened
            if cfg.drop_every and age >= cfg.drop_every:
                self.sim.stats.drops += 1
                log.info("fault: dropping a connection after %.1fs", age)
                self.ws.transport.abort()
                return
            if cfg.stall_after and age >= cfg.stall_after:
                await asyncio.sleep(3600)  # stalled: nothing more is sent; pings are still answered
                continue
            if cfg.shutdown_every and self.shutdown_at is None and age >= cfg.shutdown_every:
                self.shutdown_at = now
                self.sim.stats.shutdowns_sent += 1
                ms = time.time_ns() // 1_000_000
                notice = (f'{{"stream":"!serverShutdown","data":{{"e":"serverShutdown","E":{ms}}}}}'
                          if self.protocol == "binance" else f'{{"e":"serverShutdown","E":{ms}}}')
                await self.send([notice])
            if self.shutdown_at is not None and now - self.shutdown_at >= cfg.shutdown_grace:
                await self.ws.close(1001, "server shutdown")
                return
            assert self.cursor is not None
            if self.cursor < market.base:
                self.sim.stats.slow_consumers += 1
                log.warning("closing a slow consumer %d events behind", market.head - self.cursor)
                await self.ws.close(1008, "slow consumer")
                return
            if self.cursor >= market.head:
                market.demand(_SEND_BATCH)
            if self.cursor >= market.head:
                timeout = cfg.heartbeat_interval if kraken else 1.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(market.changed.wait(), timeout)
                if kraken and self.cursor >= market.head and time.monotonic() - self.last_sent >= \
                        cfg.heartbeat_interval:
                    await self.send(['{"event":"heartbeat"}' if self.protocol == "kraken1"
                                     else '{"channel":"heartbeat"}'])
                continue
            events = market.since(self.cursor, _SEND_BATCH)
            if self.lag:
                due_before = time.monotonic() - self.lag
                due = 0
                while due < len(events) and events[due].at <= due_before:
                    due += 1
                if not due:
                    await asyncio.sleep(events[0].at - due_before)
                    continue
                events = events[:due]
            self.cursor += len(events)
            frames = []
            protocol, subscribed = self.protocol, self.subscribed
            for event in events:
                if event.symbol is None or event.symbol in subscribed:
                    frames.append(event.frame(protocol))
                    self.data_frames += 1
                    if cfg.garbage_every and self.data_frames % cfg.garbage_every == 0:
                        frames.append(ws_text_frame(_garbage(protocol, self.garbage_n)))
                        self.garbage_n += 1
                        self.sim.stats.garbage_sent += 1
                        self.sim.stats.frames_sent -= 1  # counted as garbage, not as a data frame
            await self.send_frames(frames)
            if cfg.rate == 0:
                await asyncio.sleep(0)  # let other clients and the server breathe


def run_simulator(cfg: SimulatorConfig, on_ready: Callable[[str, Simulator], None] | None = None) -> SimulatorStats:
    """Serve until SIGTERM/SIGINT; `on_ready(url, simulator)` is called once listening."""
    import signal

    async def main() -> SimulatorStats:
        sim = Simulator(cfg)
        stop, ready = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(sim.serve(stop, ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            exc = task.exception()
            if isinstance(exc, OSError):
                raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
            return task.result()
        if on_ready is not None:
            on_ready(sim.url, sim)
        return await task

    return asyncio.run(main())
