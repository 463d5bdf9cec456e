"""The resilient exchange WebSocket: TLS, heartbeat, idle watchdog, make-before-break rotation, backoff.

Built on the websockets asyncio client (`websockets.asyncio.client.connect`). Its own keepalive is off;
ours pings every ping_interval and drops the connection when no pong comes within pong_timeout (the
library still answers the server's pings). Every heartbeat failure is logged at WARNING and counted, and
a heartbeat task that fails for an unexpected reason closes its connection rather than dying silently.

The session knows nothing about exchanges: a handler turns frames into signals (SIG_*) and decides when a
rotation's old connection may close (see k2cli.stream.dedup). Its parts: `connection` (the vocabulary),
`dialer` (TLS, URLs, backoff), `reader`, `watchdog` and `rotation`; this module ties them.
"""

from __future__ import annotations

import asyncio
import logging

from k2cli.errors import ConfigError, K2Error
from k2cli.exchanges.connection import (
    ERROR_TYPES,
    RECONNECT_REASONS,
    ROTATION_REASONS,
    SIG_BLOCKED,
    SIG_DATA,
    SIG_FATAL,
    SIG_SHUTDOWN,
    Connection,
    SessionConfig,
    SessionHandler,
    drop,
    wait_any,
)
from k2cli.exchanges.dialer import Dialer, TLSRefused, build_ssl_context
from k2cli.exchanges.reader import _queue_layout_ok, queued_messages, read_frames
from k2cli.exchanges.rotation import rotate
from k2cli.exchanges.watchdog import watch

__all__ = [
    "ERROR_TYPES", "RECONNECT_REASONS", "ROTATION_REASONS", "SIG_BLOCKED", "SIG_DATA", "SIG_FATAL", "SIG_SHUTDOWN",
    "Connection", "Session", "SessionConfig", "SessionHandler", "TLSRefused", "_queue_layout_ok",
    "build_ssl_context", "queued_messages",
]

log = logging.getLogger("k2.stream")


class Session:
    """Keeps one healthy connection streaming (two during a rotation) until `stop` is set."""

    def __init__(self, config: SessionConfig, handler: SessionHandler) -> None:
        if not config.urls:
            raise ConfigError("no exchange URL configured", setting=config.url_setting)
        self.cfg = config
        self.handler = handler
        self.paused = False
        self.connections: list[Connection] = []
        self.primary: Connection | None = None
        self.dialer = Dialer(config, handler)
        self._crash: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def stop_event(self) -> asyncio.Event:
        """The event that ends the run (set by the caller, a fatal frame or a crash)."""
        assert self._stop is not None
        return self._stop

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until `stop` is set; raise for what reconnecting cannot fix."""
        self._stop = stop
        loop = asyncio.get_running_loop()
        try:
            primary = await self.establish(first=True)
            while primary is not None and not stop.is_set():
                self.primary = primary
                timeout = max(0.0, primary.opened_at + self.cfg.rotation_interval - loop.time())
                await wait_any((primary.done, primary.shutdown, stop), timeout)
                self._raise_if_failed()
                if stop.is_set():
                    break
                if primary.done.is_set():
                    primary = await self._reconnect(primary)
                    continue
                reason = "server_shutdown" if primary.shutdown.is_set() else "scheduled"
                if reason == "scheduled" and self.paused:  # Kafka is holding us up: a new connection cannot help
                    await self.sleep(0.5, primary.done, primary.shutdown)
                    continue
                primary = await rotate(self, primary, reason)
            self._raise_if_failed()
        finally:
            await self._close_all()
        self._raise_if_failed()

    async def _reconnect(self, primary: Connection) -> Connection | None:
        reason = primary.close_reason or "connection_closed"
        if primary.first_data_at is None:  # closed before it delivered anything: a failed attempt
            self.dialer.retries.failures += 1
        await self.finish(primary)
        self.handler.reconnecting(reason)
        return await self.establish(first=False)

    def crashed(self, exc: BaseException) -> None:
        """A connection task failed unexpectedly: stop, and raise exc from run()."""
        self._crash = exc
        if self._stop is not None:
            self._stop.set()

    def stop_now(self) -> None:
        """End the run (the handler reported a fatal error)."""
        self.stop_event.set()

    def _raise_if_failed(self) -> None:
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash
        if self.handler.fatal is not None:
            raise self.handler.fatal

    async def sleep(self, seconds: float, *also: asyncio.Event) -> None:
        """Wait seconds, less if stopped or one of `also` is set."""
        await wait_any((self.stop_event, *also), seconds)

    async def establish(self, first: bool) -> Connection | None:
        """Open a connection, retrying with backoff through the URL list; None if stopped meanwhile."""
        stop = self.stop_event
        if not first:
            await self.sleep(self.dialer.retries.delay())
        while not stop.is_set():
            self._raise_if_failed()
            try:
                return await self.open()
            except K2Error:
                raise
            except Exception as exc:
                delay = self.dialer.attempt_failed(exc)
            await self.sleep(delay)
        return None

    async def open(self) -> Connection:
        """Open a connection and start its reader and watchdog."""
        conn = await self.dialer.open()
        self.connections.append(conn)
        conn.tasks = [asyncio.create_task(read_frames(self, conn), name=f"ws-reader-{conn.id}"),
                      asyncio.create_task(watch(self, conn), name=f"ws-heartbeat-{conn.id}")]
        self.handler.connected(conn)
        log.info("connection %d open to %s", conn.id, conn.url)
        return conn

    async def drop(self, conn: Connection, reason: str, code: int = 1000) -> None:
        """Close a connection for `reason` (first reason wins); its reader ends and sets conn.done."""
        await drop(conn, reason, code)

    async def finish(self, conn: Connection) -> None:
        """Cancel a closed connection's tasks and forget it."""
        for task in conn.tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        if conn in self.connections:
            self.connections.remove(conn)
        self.handler.connection_closed(conn)

    async def _close_all(self) -> None:
        for conn in list(self.connections):
            if not conn.done.is_set():
                await drop(conn, "shutdown")
                await wait_any((conn.done,), 5)
            await self.finish(conn)
