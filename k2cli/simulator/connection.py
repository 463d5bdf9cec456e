"""One client connection of a simulator: its dialect's handshake, delivery from the market, heartbeats, faults.

Every connection receives the market's events from the moment it joined (its anchor), filtered by its
subscriptions. A client that falls more than `buffer_events` behind is closed as a slow consumer, as a
real exchange would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Literal

from k2cli.simulator.faults import FaultSchedule
from k2cli.simulator.tape import Event, TapeTrade, ws_text_frame

if TYPE_CHECKING:
    from k2cli.simulator.market import Market
    from k2cli.simulator.server import Simulator
    from k2cli.simulator.venues.base import Dialect

log = logging.getLogger("k2.simulate")
SEND_BATCH = 256


class Connection:
    """One connection (the `Link` its dialect talks through): subscription, sending, heartbeats and faults."""

    def __init__(self, sim: Simulator, market: Market, ws: Any, dialect: Dialect, symbols: tuple[str, ...],
                 number: int = 0) -> None:
        self.sim = sim
        self.market = market
        self.ws = ws
        self.dialect = dialect
        self.subscribed: dict[str, None] = dict.fromkeys(symbols)  # an ordered set
        self.cursor: int | None = None
        self.opened = time.monotonic()
        self.last_sent = self.opened
        self.data_frames = 0
        self.garbage_n = 0
        self.faults = FaultSchedule(sim.cfg, self.opened, number)
        self.started = asyncio.Event()
        self.lag = random.uniform(0, sim.cfg.lag_ms / 1000.0) if sim.cfg.lag_ms else 0.0

    # The Link its dialect uses.

    @property
    def conn_id(self) -> int:
        """A number that tells this connection apart."""
        return id(self)

    @property
    def served(self) -> tuple[str, ...]:
        """The symbols the simulator serves."""
        return self.sim.cfg.symbols

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

    def anchor(self) -> int:
        """Fix where this connection joins the market (its head now, the first time) and return it."""
        if self.cursor is None:
            self.cursor = self.market.head
        return self.cursor

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The symbols this connection receives, in the order they were subscribed."""
        return tuple(self.subscribed)

    def subscribe(self, symbol: str) -> None:
        """Deliver this symbol's events from now on."""
        self.subscribed[symbol] = None

    def recent_trades(self, symbol: str, before: int) -> list[TapeTrade]:
        """The symbol's last trades before market index `before` (none on a file tape)."""
        return self.market.recent_trades(symbol, before) if self.market.generated else []

    def start(self) -> None:
        """Start the market clock and the delivery from the anchor on."""
        self.anchor()
        self.market.open()
        self.started.set()

    # The connection's own work.

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
        """Serve the connection until it closes: the dialect's handshake and messages, and the sender."""
        from websockets.exceptions import ConnectionClosed

        sender = asyncio.create_task(self._sender())
        try:
            await self.dialect.open(self)
            async for message in self.ws:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sender

    async def _on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
        except ValueError:
            return
        if isinstance(msg, dict):
            await self.dialect.on_message(self, msg)

    async def _sender(self) -> None:
        """Send market events to this client, with heartbeats and faults."""
        market = self.market
        await self.started.wait()
        while True:
            fault = await self._apply_faults()
            if fault == "over":
                return
            if fault == "stalled":
                continue
            assert self.cursor is not None
            if self.cursor < market.base:
                self.sim.stats.slow_consumers += 1
                log.warning("closing a slow consumer %d events behind", market.head - self.cursor)
                await self.ws.close(1008, "slow consumer")
                return
            if self.cursor >= market.head:
                market.demand(SEND_BATCH)
            if self.cursor >= market.head:
                await self._idle()
                continue
            events = market.since(self.cursor, SEND_BATCH)
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
            await self._deliver(events)
            if self.sim.cfg.rate == 0:
                await asyncio.sleep(0)  # let other clients and the server breathe

    async def _apply_faults(self) -> Literal["over", "stalled"] | None:
        """Apply the faults due now: "over" when the connection was dropped or closed, "stalled" after a stall."""
        now = time.monotonic()
        for action in self.faults.due(now):
            if action == "drop":
                self.sim.stats.drops += 1
                log.info("fault: dropping a connection after %.1fs", now - self.opened)
                self.ws.transport.abort()
                return "over"
            if action == "stall":
                log.info("fault: stalling a connection after %.1fs", now - self.opened)
                await asyncio.sleep(3600)  # stalled: nothing more is sent; pings are still answered
                return "stalled"
            if action == "mute":
                log.info("fault: no more pongs on a connection after %.1fs", now - self.opened)
                self.ws.answers_pings = False  # a PongSwitchConnection (the server's class under fault_cycle)
            if action == "notice":
                self.sim.stats.shutdowns_sent += 1
                await self.send([self.dialect.shutdown_frame(time.time_ns() // 1_000_000)])
            if action == "close":
                await self.ws.close(1001, "server shutdown")
                return "over"
        return None

    async def _idle(self) -> None:
        """Nothing to send: wait for the market, then send the dialect's heartbeat if it has one and it is due."""
        heartbeat, interval = self.dialect.heartbeat, self.sim.cfg.heartbeat_interval
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.market.changed.wait(), interval if heartbeat is not None else 1.0)
        if heartbeat is not None and self.cursor is not None and self.cursor >= self.market.head and \
                time.monotonic() - self.last_sent >= interval:
            await self.send([heartbeat])

    async def _deliver(self, events: list[Event]) -> None:
        """Send the subscribed events' frames in one write, with a garbage frame after every N data frames."""
        frames = []
        dialect, subscribed = self.dialect, self.subscribed
        garbage_every = self.sim.cfg.garbage_every
        for event in events:
            if event.symbol is None or event.symbol in subscribed:
                frames.append(event.frame(dialect))
                self.data_frames += 1
                if garbage_every and self.data_frames % garbage_every == 0:
                    frames.append(ws_text_frame(dialect.garbage(self.garbage_n)))
                    self.garbage_n += 1
                    self.sim.stats.garbage_sent += 1
                    self.sim.stats.frames_sent -= 1  # counted as garbage, not as a data frame
        await self.send_frames(frames)
