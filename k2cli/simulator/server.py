"""A local exchange: one venue's WebSocket protocols served over ws:// or wss:// from a tape, with faults.

All connections see one market (k2cli.simulator.market); each is served by the dialect its venue routes
its request path to (k2cli.simulator.venues), with the faults of k2cli.simulator.faults. Paths the venue
does not route are refused with HTTP 400. Plain HTTP requests (no WebSocket upgrade) on the same port get
the venue's REST trade history (k2cli.simulator.rest), over TLS too when serving wss://.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from k2cli.errors import ConfigError
from k2cli.simulator.config import SimulatorConfig, SimulatorStats, check_config, venue_of
from k2cli.simulator.connection import Connection
from k2cli.simulator.faults import pong_switch_connection_class
from k2cli.simulator.market import Market
from k2cli.simulator.rest import RestService, wants_websocket
from k2cli.simulator.venues.base import Route


class Simulator:
    """The WebSocket server of a simulated exchange."""

    def __init__(self, cfg: SimulatorConfig) -> None:
        self.cfg = check_config(cfg)
        self.venue = venue_of(self.cfg)
        self.stats = SimulatorStats()
        self.market: Market | None = None
        self.rest: RestService | None = None
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

    def _route(self, path: str) -> Route | None:
        return self.venue.route(path, self.cfg)

    def _process_request(self, connection: Any, request: Any) -> Any:
        if self.rest is not None and not wants_websocket(request.headers):
            return self.rest.respond(connection, request.path)  # a coroutine: websockets awaits it
        if self._route(request.path) is None:
            self.stats.refused += 1
            return connection.respond(HTTPStatus.BAD_REQUEST, f"Invalid request: {request.path}\n")
        return None

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> SimulatorStats:
        """Serve until `stop` is set; `ready` is set once listening (self.url is known then)."""
        from websockets.asyncio.server import ServerConnection, serve

        cfg = self.cfg
        self.market = Market(cfg, self.stats, self.venue.multi_trade_events)
        api = self.venue.rest_api(cfg)
        self.rest = RestService(cfg, api, self.market.history, self.stats) if api is not None else None
        switched = cfg.no_pong or cfg.fault_cycle
        create_connection = pong_switch_connection_class(not cfg.no_pong) if switched else ServerConnection
        async with serve(
            self._handle, cfg.host, cfg.port, ssl=self._ssl(), compression=None,
            ping_interval=cfg.ping_interval or None, ping_timeout=cfg.ping_timeout if cfg.ping_interval else None,
            process_request=self._process_request, create_connection=create_connection, max_queue=64,
            open_timeout=10 + cfg.rest_delay_ms / 1000,  # a slow REST answer is sent within the opening handshake
        ) as server:
            sock = next(iter(server.sockets))
            self.port = sock.getsockname()[1]
            scheme = "wss" if cfg.tls_cert else "ws"
            self.url = f"{scheme}://{cfg.host}:{self.port}{self.venue.url_path}"
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
        route = self._route(ws.request.path)
        assert route is not None and self.market is not None  # refused in _process_request; set by serve()
        self.stats.connections += 1
        self.stats.open_connections += 1
        connection = Connection(self, self.market, ws, route.dialect, route.symbols, self.stats.connections - 1)
        try:
            await connection.run()
        finally:
            self.stats.open_connections -= 1


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
            if isinstance(exc, OverflowError):  # a port outside 0..65535
                raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc}") from None
            return task.result()
        if on_ready is not None:
            on_ready(sim.url, sim)
        return await task

    return asyncio.run(main())
