"""The resilient session against a real local exchange (the simulator, in process): failover, giving up,
heartbeat, rotation events. No Kafka needed; the handler records what the session does."""

from __future__ import annotations

import asyncio

import pytest

from k2cli.errors import ServiceUnavailable
from k2cli.exchanges.binance import BinanceParser, stream_url
from k2cli.exchanges.session import SIG_DATA, Session, SessionConfig, SessionHandler
from k2cli.simulator.config import SimulatorConfig
from k2cli.simulator.server import Simulator
from tests.integration.stream_support import free_port

pytestmark = pytest.mark.integration


class Recorder(SessionHandler):
    def __init__(self, stop_after: int = 0) -> None:
        self.parser = BinanceParser()
        self.trades: list[int] = []
        self.events: list[tuple] = []
        self.stop_after = stop_after
        self.stop: asyncio.Event | None = None

    def on_frame(self, conn, raw):
        parsed = self.parser.parse(raw, 1)
        self.trades.extend(t["source_sequence"] for t in parsed.trades)
        if self.stop_after and len(self.trades) >= self.stop_after:
            self.stop.set()
        return SIG_DATA if parsed.trades else 0

    def connected(self, conn):
        self.events.append(("connected", conn.url.split("?")[0]))

    def reconnecting(self, reason):
        self.events.append(("reconnecting", reason))

    def attempt_failed(self, url, error_type, detail, delay):
        self.events.append(("failed", error_type))

    def rotated(self, reason, overlap, waited):
        self.events.append(("rotated", reason))

    def handover_begin(self, old, new):
        self.events.append(("begin", old.done.is_set()))

    def handover_end(self, old, new):
        self.events.append(("end", new.first_data_at is not None and not new.done.is_set(), old.id < new.id))

    def ping_sent(self, conn):
        self.events.append(("ping",))

    def pong(self, conn, latency):
        self.events.append(("pong",))

    def pong_timeout(self, conn):
        self.events.append(("pong_timeout",))


async def _serve(cfg: SimulatorConfig):
    sim = Simulator(cfg)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(sim.serve(stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    return sim, stop, task


def _config(urls, **kw):
    base = dict(backoff_initial=0.05, backoff_max=0.2, ping_interval=60, pong_timeout=5, idle_timeout=10)
    base.update(kw)
    return SessionConfig(urls=tuple(stream_url(u, ["BTCUSDT"]) for u in urls), **base)


def test_failover_to_the_next_url_after_a_refused_connection():
    async def main():
        sim, sim_stop, task = await _serve(SimulatorConfig("binance", ("BTCUSDT",), rate=200))
        dead = f"ws://127.0.0.1:{free_port()}/stream"
        rec = Recorder(stop_after=50)
        rec.stop = asyncio.Event()
        await asyncio.wait_for(Session(_config([dead, sim.url]), rec).run(rec.stop), 20)
        sim_stop.set()
        await task
        return rec

    rec = asyncio.run(main())
    assert rec.events[0] == ("failed", "refused")
    assert ("connected", rec.events[1][1]) == rec.events[1] and rec.events[1][1].startswith("ws://127.0.0.1:")
    assert len(rec.trades) >= 50 and rec.trades == list(range(rec.trades[0], rec.trades[0] + len(rec.trades)))


def test_max_reconnects_gives_up_with_a_clear_error():
    async def main():
        dead = f"ws://127.0.0.1:{free_port()}/stream"
        rec = Recorder()
        with pytest.raises(ServiceUnavailable) as err:
            await asyncio.wait_for(Session(_config([dead], max_reconnects=3), rec).run(asyncio.Event()), 20)
        return rec, err.value

    rec, error = asyncio.run(main())
    assert "gave up after 3 failed connection attempts" in str(error) and "connection refused" in str(error)
    assert rec.events == [("failed", "refused"), ("failed", "refused")]


def test_heartbeat_pongs_are_recorded_and_a_silent_peer_is_dropped():
    async def main():
        sim, sim_stop, task = await _serve(SimulatorConfig("binance", ("BTCUSDT",), rate=50))
        rec = Recorder()
        stop = asyncio.Event()
        run = asyncio.create_task(Session(_config([sim.url], ping_interval=0.3, pong_timeout=0.5), rec).run(stop))
        await asyncio.sleep(1.5)
        stop.set()
        await run
        sim_stop.set()
        await task
        nopong, nopong_stop, nopong_task = await _serve(SimulatorConfig("binance", ("BTCUSDT",), rate=50,
                                                                        no_pong=True))
        silent = Recorder()
        stop = asyncio.Event()
        run = asyncio.create_task(Session(_config([nopong.url], ping_interval=0.3, pong_timeout=0.3),
                                          silent).run(stop))
        await asyncio.sleep(2.5)
        stop.set()
        await run
        nopong_stop.set()
        await nopong_task
        return rec, silent

    rec, silent = asyncio.run(main())
    assert rec.events.count(("pong",)) >= 2 and ("pong_timeout",) not in rec.events
    assert silent.events.count(("pong_timeout",)) >= 2 and ("reconnecting", "pong_timeout") in silent.events


def test_scheduled_rotation_is_make_before_break():
    async def main():
        sim, sim_stop, task = await _serve(SimulatorConfig("binance", ("BTCUSDT",), rate=300))
        rec = Recorder()
        stop = asyncio.Event()
        session = Session(_config([sim.url], rotation_interval=0.7), rec)
        run = asyncio.create_task(session.run(stop))
        await asyncio.sleep(2.0)
        stop.set()
        await run
        sim_stop.set()
        await task
        return rec, sim.stats

    rec, stats = asyncio.run(main())
    rotations = rec.events.count(("rotated", "scheduled"))
    assert rotations >= 1
    # every handover began while the old connection was still open, and ended with the new one delivering
    assert rec.events.count(("begin", False)) == rotations
    assert rec.events.count(("end", True, True)) == rotations
    assert not [e for e in rec.events if e[0] == "reconnecting"]
    assert stats.connections == rotations + 1
