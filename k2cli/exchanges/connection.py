"""What the exchange session talks in: its configuration, one connection, the handler it calls, the signals."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from k2cli.errors import K2Error

SIG_DATA = 1  # the frame carried trades
SIG_SHUTDOWN = 2  # the exchange announced this connection will close: rotate now
SIG_FATAL = 4  # the handler hit an error that reconnecting cannot fix (handler.fatal holds it)
SIG_BLOCKED = 8  # downstream is full: stop reading until handler.wait_unblocked() returns

RECONNECT_REASONS = ("connection_closed", "pong_timeout", "idle_timeout", "heartbeat_error")
ROTATION_REASONS = ("scheduled", "server_shutdown")
ERROR_TYPES = ("refused", "timeout", "dns", "tls", "http_status", "handshake", "closed", "other")


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
        self.tasks: list[asyncio.Task[None]] = []

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


async def wait_any(events: tuple[asyncio.Event, ...], timeout: float | None) -> None:
    """Return when one of the events is set, or after timeout seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def drop(conn: Connection, reason: str, code: int = 1000) -> None:
    """Close a connection for `reason` (first reason wins); its reader ends and sets conn.done."""
    if conn.close_reason is None:
        conn.close_reason = reason
    try:
        await asyncio.wait_for(conn.ws.close(code=code, reason=reason[:100]), 5)
    except Exception:
        transport = getattr(conn.ws, "transport", None)
        if transport is not None:
            transport.abort()
