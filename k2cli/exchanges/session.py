"""The resilient exchange WebSocket: TLS, heartbeat, idle watchdog, make-before-break rotation, backoff.

Built on the websockets asyncio client (`websockets.asyncio.client.connect`). Its own keepalive is off;
ours pings every ping_interval and drops the connection when no pong comes within pong_timeout (the
library still answers the server's pings). Every heartbeat failure is logged at WARNING and counted, and
a heartbeat task that fails for an unexpected reason closes its connection rather than dying silently.

The session knows nothing about exchanges: a handler turns frames into signals (SIG_*) and decides when a
rotation's old connection may close (see k2cli.stream.dedup).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k2cli.errors import ConfigError, K2Error, ServiceUnavailable
from k2cli.exchanges.heartbeat import Action, Heartbeat

log = logging.getLogger("k2.stream")

SIG_DATA = 1  # the frame carried trades
SIG_SHUTDOWN = 2  # the exchange announced this connection will close: rotate now
SIG_FATAL = 4  # the handler hit an error that reconnecting cannot fix (handler.fatal holds it)
SIG_BLOCKED = 8  # downstream is full: stop reading until handler.wait_unblocked() returns

RECONNECT_REASONS = ("connection_closed", "pong_timeout", "idle_timeout", "heartbeat_error")
ROTATION_REASONS = ("scheduled", "server_shutdown")
ERROR_TYPES = ("refused", "timeout", "dns", "tls", "http_status", "handshake", "closed", "other")


class TLSRefused(ServiceUnavailable):
    """The exchange's TLS certificate did not verify."""


@dataclass(frozen=True)
class SessionConfig:
    """How the session connects and keeps connections healthy."""

    urls: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    ping_interval: float = 180.0
    pong_timeout: float = 10.0
    idle_timeout: float = 30.0
    rotation_interval: float = 4 * 3600.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    max_reconnects: int = 0  # consecutive failed attempts before giving up; 0 = never
    ssl_verify: bool = True
    ca_bundle: str = ""
    open_timeout: float = 10.0
    overlap_timeout: float = 30.0  # longest make-before-break overlap before the old connection is closed anyway
    quiet_grace: float = 2.0  # new connection streaming this long => symbols silent on both are settled
    max_frame_bytes: int = 4 * 2**20
    url_setting: str = "K2_BINANCE_URL"  # named in errors about the URL


def build_ssl_context(verify: bool = True, ca_bundle: str = "") -> ssl.SSLContext:
    """A client TLS context: certifi's roots plus an optional CA bundle; verify=False turns checking off."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    import certifi

    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle:
        try:
            ctx.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca-bundle {ca_bundle!r} cannot be loaded: {exc}", setting="K2_CA_BUNDLE") from None
    return ctx


class Connection:
    """One WebSocket connection and what the session knows about it."""

    def __init__(self, conn_id: int, url: str, ws: Any, now: float) -> None:
        self.id = conn_id
        self.url = url
        self.ws = ws
        self.opened_at = now
        self.opened_wall = time.time()
        self.last_frame = now
        self.first_frame_at: float | None = None
        self.first_data_at: float | None = None
        self.close_reason: str | None = None
        self.done = asyncio.Event()
        self.shutdown = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def age(self, now: float) -> float:
        """Seconds since the connection opened."""
        return now - self.opened_at


class SessionHandler:
    """What the session calls; the stream runner implements it. The defaults do nothing."""

    fatal: K2Error | None = None

    def on_frame(self, conn: Connection, raw: str | bytes) -> int:
        """Handle one frame; return SIG_* flags (0 for none)."""
        return 0

    async def wait_unblocked(self) -> None:
        """Return once downstream can take more (after SIG_BLOCKED)."""

    def handover_begin(self, old: Connection, new: Connection) -> None:
        """A rotation from old to new starts."""

    def handover_ready(self, old: Connection, new: Connection, quiet_ok: bool) -> tuple[bool, list[str]]:
        """May old close without losing a trade? (ready, what is still awaited)."""
        return True, []

    def handover_end(self, old: Connection, new: Connection) -> None:
        """The rotation is done; old is closed."""

    def connection_closed(self, conn: Connection) -> None:
        """A connection ended (any reason)."""

    # events, for metrics and logs
    def connected(self, conn: Connection) -> None: ...
    def reconnecting(self, reason: str) -> None: ...
    def attempt_failed(self, url: str, error_type: str, detail: str, delay: float) -> None: ...
    def rotated(self, reason: str, overlap: float, waited: list[str]) -> None: ...
    def ping_sent(self, conn: Connection) -> None: ...
    def pong(self, conn: Connection, latency: float) -> None: ...
    def pong_timeout(self, conn: Connection) -> None: ...


def _classify(exc: BaseException) -> tuple[str, str]:
    """(error_type, one-line detail) of a failed connection attempt."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    if isinstance(exc, InvalidStatus):
        return "http_status", f"HTTP {exc.response.status_code}"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout", "timed out opening the connection"
    if isinstance(exc, OSError) and exc.__class__.__name__ == "gaierror":
        return "dns", f"name resolution failed: {exc}"
    if isinstance(exc, ConnectionClosed):
        return "closed", "closed during the handshake"
    if isinstance(exc, InvalidHandshake):
        return "handshake", f"handshake failed: {exc}"
    if isinstance(exc, OSError):
        return "other", f"{exc.__class__.__name__}: {exc.strerror or exc}"
    return "other", f"{exc.__class__.__name__}: {exc}"


def queued_messages(ws: Any) -> Callable[[], str | bytes | None] | None:
    """A function that takes the next message websockets has already received and queued, or returns None.

    `await ws.recv()` goes through three coroutines per message even when one is waiting; at tens of
    thousands of frames a second that is a good part of the receive cost. This reads the queue of the
    websockets asyncio Assembler directly, for the simple case only: one complete text or binary frame
    that decodes. Anything else (nothing queued, a fragmented message, invalid UTF-8, a recv() in
    progress) returns None and the caller awaits recv(), which handles it as always. None (no function)
    when the connection is not laid out as this expects (another websockets version)."""
    from websockets.frames import Opcode

    assembler = getattr(ws, "recv_messages", None)
    queue = getattr(getattr(assembler, "frames", None), "queue", None)
    resume = getattr(assembler, "maybe_resume", None)
    if not isinstance(queue, collections.deque) or resume is None or \
            not isinstance(getattr(assembler, "get_in_progress", None), bool) or not _queue_layout_ok():
        return None
    text, binary = Opcode.TEXT, Opcode.BINARY

    def take() -> str | bytes | None:
        if not queue or assembler.get_in_progress:
            return None
        frame = queue[0]
        opcode = frame.opcode
        if not frame.fin or (opcode is not text and opcode is not binary):
            return None
        data = frame.data if type(frame.data) is bytes else bytes(frame.data)
        if opcode is text:
            try:
                data = data.decode()
            except UnicodeDecodeError:
                return None  # recv() fails the connection with the right close code
        queue.popleft()
        resume()
        return data

    return take


@functools.cache
def _queue_layout_ok() -> bool:
    """Whether websockets' asyncio Assembler queues frames the way queued_messages() reads them."""
    try:
        from websockets.asyncio.messages import Assembler, SimpleQueue
    except ImportError:  # pragma: no cover - websockets without the asyncio implementation
        return False
    import inspect

    try:
        source = inspect.getsource(Assembler.get) + inspect.getsource(SimpleQueue.get)
    except (OSError, TypeError):  # pragma: no cover - no source available
        return False
    return "self.frames.get(" in source and "self.queue.popleft()" in source and "maybe_resume()" in source


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
        self._ids = itertools.count(1)
        self._url_index = 0
        self._failures = 0
        self._ever_connected = False
        self._crash: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._ssl = build_ssl_context(config.ssl_verify, config.ca_bundle) if any(
            u.startswith("wss://") for u in config.urls) else None

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until `stop` is set; raise for what reconnecting cannot fix."""
        self._stop = stop
        loop = asyncio.get_running_loop()
        try:
            primary = await self._establish(first=True)
            while primary is not None and not stop.is_set():
                self.primary = primary
                timeout = max(0.0, primary.opened_at + self.cfg.rotation_interval - loop.time())
                await self._wait_any((primary.done, primary.shutdown, stop), timeout)
                self._raise_if_failed()
                if stop.is_set():
                    break
                if primary.done.is_set():
                    reason = primary.close_reason or "connection_closed"
                    if primary.first_data_at is None:  # closed before it delivered anything: a failed attempt
                        self._failures += 1
                    await self._finish(primary)
                    self.handler.reconnecting(reason)
                    primary = await self._establish(first=False)
                    continue
                reason = "server_shutdown" if primary.shutdown.is_set() else "scheduled"
                if reason == "scheduled" and self.paused:  # Kafka is holding us up: a new connection cannot help
                    await self._sleep(0.5, primary.done, primary.shutdown)
                    continue
                primary = await self._rotate(primary, reason)
            self._raise_if_failed()
        finally:
            await self._close_all()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash
        if self.handler.fatal is not None:
            raise self.handler.fatal

    async def _wait_any(self, events: tuple[asyncio.Event, ...], timeout: float | None) -> None:
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _sleep(self, seconds: float, *also: asyncio.Event) -> None:
        assert self._stop is not None
        await self._wait_any((self._stop, *also), seconds)

    def _backoff(self, failures: int) -> float:
        """Capped exponential backoff with jitter: uniform in [d/2, d], d = min(max, initial * 2^(n-1))."""
        d = min(self.cfg.backoff_max, self.cfg.backoff_initial * 2 ** max(0, failures - 1))
        return random.uniform(d / 2, d)

    # ------------------------------------------------------------------ connect

    async def _establish(self, first: bool) -> Connection | None:
        """Open a connection, retrying with backoff through the URL list; None if stopped meanwhile."""
        assert self._stop is not None
        if not first:
            await self._sleep(self._backoff(max(1, self._failures)))
        while not self._stop.is_set():
            self._raise_if_failed()
            try:
                return await self._open()
            except K2Error:
                raise
            except Exception as exc:
                delay = self._attempt_failed(exc)
            await self._sleep(delay)
        return None

    def _attempt_failed(self, exc: BaseException) -> float:
        url = self.cfg.urls[self._url_index]
        error_type, detail = _classify(exc)
        self._failures += 1
        if len(self.cfg.urls) > 1:
            self._url_index = (self._url_index + 1) % len(self.cfg.urls)
        if self.cfg.max_reconnects and self._failures >= self.cfg.max_reconnects:
            raise ServiceUnavailable(f"gave up after {self._failures} failed connection attempts; last: {url}: "
                                     f"{detail}", setting="K2_MAX_RECONNECTS")
        delay = self._backoff(self._failures)
        self.handler.attempt_failed(url, error_type, detail, delay)
        log.warning("connection to %s failed (%s); retrying in %.1fs", url, detail, delay)
        return delay

    async def _open(self) -> Connection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, InvalidURI

        url = self.cfg.urls[self._url_index]
        try:
            ws = await connect(
                url, ssl=self._ssl if url.startswith("wss://") else None,
                ping_interval=None, ping_timeout=None, close_timeout=2, open_timeout=self.cfg.open_timeout,
                max_size=self.cfg.max_frame_bytes, max_queue=512, user_agent_header="k2",
            )
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or "certificate verify failed"
            raise TLSRefused(f"TLS certificate of {url} was refused: {reason} (trust its CA with --ca-bundle FILE, "
                             "or pass --insecure for testing only)", setting="K2_CA_BUNDLE") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if not self._ever_connected and 400 <= status < 500 and status not in (408, 429):
                raise ConfigError(f"{url} refused the WebSocket upgrade with HTTP {status} (check --url and "
                                  "--symbols)", setting=self.cfg.url_setting) from None
            raise
        except InvalidURI as exc:
            raise ConfigError(f"{url} is not a WebSocket URL: {exc}", setting=self.cfg.url_setting) from None
        loop = asyncio.get_running_loop()
        conn = Connection(next(self._ids), url, ws, loop.time())
        try:
            for message in self.cfg.subscribe:
                await ws.send(message)
        except Exception:
            await ws.close()
            raise
        self._ever_connected = True
        self.connections.append(conn)
        conn.tasks = [asyncio.create_task(self._reader(conn), name=f"ws-reader-{conn.id}"),
                      asyncio.create_task(self._watchdog(conn), name=f"ws-heartbeat-{conn.id}")]
        self.handler.connected(conn)
        log.info("connection %d open to %s", conn.id, url)
        return conn

    # ------------------------------------------------------------------ per connection

    async def _reader(self, conn: Connection) -> None:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        handler = self.handler
        clock = asyncio.get_running_loop().time
        recv = conn.ws.recv  # what `async for raw in conn.ws` does, without the async generator in between
        queued = queued_messages(conn.ws)
        try:
            while True:
                raw = queued() if queued is not None else None
                if raw is None:
                    try:
                        raw = await recv()
                    except ConnectionClosedOK:
                        break
                now = conn.last_frame = clock()
                if conn.first_frame_at is None:
                    conn.first_frame_at = now
                sig = handler.on_frame(conn, raw)
                if not sig:
                    continue
                if sig & SIG_DATA and conn.first_data_at is None:
                    conn.first_data_at = now
                    self._failures = 0
                if sig & SIG_SHUTDOWN:
                    log.warning("connection %d: the exchange announced a shutdown; rotating", conn.id)
                    conn.shutdown.set()
                if sig & SIG_FATAL:
                    assert self._stop is not None
                    conn.close_reason = "fatal"
                    self._stop.set()
                    break
                if sig & SIG_BLOCKED:
                    self.paused = True
                    try:
                        await handler.wait_unblocked()
                    finally:
                        self.paused = False
                        resumed = clock()
                        for c in self.connections:
                            c.last_frame = resumed
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in frame handling: stop loudly instead of reconnecting forever
            log.exception("connection %d: frame handling failed", conn.id)
            self._crash = exc
            if self._stop is not None:
                self._stop.set()
        finally:
            if conn.close_reason is None:
                conn.close_reason = "connection_closed"
                code = getattr(conn.ws, "close_code", None)
                log.warning("connection %d to %s closed by the peer or network (code %s)", conn.id, conn.url, code)
            conn.done.set()

    async def _watchdog(self, conn: Connection) -> None:
        """Idle watchdog and heartbeat of one connection (the schedule is k2cli.exchanges.heartbeat's)."""
        from websockets.exceptions import ConnectionClosed

        cfg = self.cfg
        loop = asyncio.get_running_loop()
        hb = Heartbeat(cfg.ping_interval, cfg.pong_timeout, cfg.idle_timeout, started=loop.time())
        tick = hb.tick_seconds()
        try:
            while not conn.done.is_set():
                await self._wait_any((conn.done,), tick)
                if conn.done.is_set():
                    return
                now = loop.time()
                action = hb.next_action(now, conn.last_frame, self.paused)
                if action is Action.IDLE:
                    log.warning("connection %d: no frame for %.1fs (idle timeout %.1fs); reconnecting",
                                conn.id, now - conn.last_frame, cfg.idle_timeout)
                    await self.drop(conn, "idle_timeout")
                    return
                if action is Action.PING:
                    waiter = await conn.ws.ping()
                    hb.ping_sent(loop.time())
                    self.handler.ping_sent(conn)
                    try:
                        latency = await asyncio.wait_for(waiter, cfg.pong_timeout)
                    except TimeoutError:
                        if self.paused or conn.done.is_set():
                            continue
                        hb.pong_missed()
                        log.warning("connection %d: no pong within %.1fs; reconnecting", conn.id, cfg.pong_timeout)
                        self.handler.pong_timeout(conn)
                        await self.drop(conn, "pong_timeout")
                        return
                    hb.pong(loop.time())
                    self.handler.pong(conn, latency)
        except ConnectionClosed:
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # never let the heartbeat die silently: without it a dead link goes unnoticed
            log.exception("connection %d: heartbeat failed; closing the connection", conn.id)
            await self.drop(conn, "heartbeat_error")

    async def drop(self, conn: Connection, reason: str, code: int = 1000) -> None:
        """Close a connection for `reason` (first reason wins); its reader ends and sets conn.done."""
        if conn.close_reason is None:
            conn.close_reason = reason
        try:
            await asyncio.wait_for(conn.ws.close(code=code, reason=reason[:100]), 5)
        except Exception:
            transport = getattr(conn.ws, "transport", None)
            if transport is not None:
                transport.abort()

    async def _finish(self, conn: Connection) -> None:
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
                await self.drop(conn, "shutdown")
                await self._wait_any((conn.done,), 5)
            await self._finish(conn)

    # ------------------------------------------------------------------ rotation

    async def _rotate(self, old: Connection, reason: str) -> Connection | None:
        """Make-before-break: open a new connection, wait until it covers the old one, then close the old."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        log.info("connection %d: rotating (%s) after %.0fs", old.id, reason, old.age(loop.time()))
        while not self._stop.is_set():
            if old.done.is_set():  # the old connection died before a new one was ready: a plain reconnect
                await self._finish(old)
                self.handler.reconnecting(old.close_reason or "connection_closed")
                return await self._establish(first=False)
            try:
                new = await self._open()
            except K2Error:
                raise
            except Exception as exc:
                await self._sleep(self._attempt_failed(exc), old.done)
                continue
            started = loop.time()
            self.handler.handover_begin(old, new)
            waited: list[str] = []
            while True:
                now = loop.time()
                if self._stop.is_set() or old.done.is_set() or new.done.is_set():
                    break
                if new.first_frame_at is not None:
                    quiet_ok = now - new.first_frame_at >= self.cfg.quiet_grace
                    ready, waited = self.handler.handover_ready(old, new, quiet_ok)
                    if ready:
                        break
                if now - started > self.cfg.overlap_timeout:
                    log.warning("rotation: closing connection %d after %.0fs of overlap while still waiting for %s",
                                old.id, now - started, ", ".join(waited) or "a first frame")
                    break
                await self._sleep(0.02, new.done, old.done)
            if new.done.is_set() and not self._stop.is_set():  # the new one failed during the overlap: retry
                await self._finish(new)
                self.handler.handover_end(new, old)  # roles swapped: forget new, keep old
                continue
            if not old.done.is_set():
                await self.drop(old, "rotation")
                await self._wait_any((old.done,), 5)
            await self._finish(old)
            self.handler.handover_end(old, new)
            self.handler.rotated(reason, loop.time() - started, waited)
            log.info("rotation done: connection %d replaced %d after %.2fs of overlap", new.id, old.id,
                     loop.time() - started)
            return new
        return old
