"""Idle watchdog and heartbeat I/O of one connection (the schedule is k2cli.exchanges.heartbeat's)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from k2cli.exchanges.connection import Connection, drop, wait_any
from k2cli.exchanges.heartbeat import Action, Heartbeat

if TYPE_CHECKING:
    from k2cli.exchanges.session import Session

log = logging.getLogger("k2.stream")


async def watch(session: Session, conn: Connection) -> None:
    """Ping on schedule and drop the connection on a missed pong or an idle link; never dies silently."""
    from websockets.exceptions import ConnectionClosed

    cfg = session.cfg
    loop = asyncio.get_running_loop()
    hb = Heartbeat(cfg.ping_interval, cfg.pong_timeout, cfg.idle_timeout, started=loop.time())
    tick = hb.tick_seconds()
    try:
        while not conn.done.is_set():
            await wait_any((conn.done,), tick)
            if conn.done.is_set():
                return
            now = loop.time()
            action = hb.next_action(now, conn.last_frame, session.paused)
            if action is Action.IDLE:
                log.warning("connection %d: no frame for %.1fs (idle timeout %.1fs); reconnecting",
                            conn.id, now - conn.last_frame, cfg.idle_timeout)
                await drop(conn, "idle_timeout")
                return
            if action is Action.PING and not await _ping(session, conn, hb):
                return
    except ConnectionClosed:
        return
    except asyncio.CancelledError:
        raise
    except Exception:  # never let the heartbeat die silently: without it a dead link goes unnoticed
        log.exception("connection %d: heartbeat failed; closing the connection", conn.id)
        await drop(conn, "heartbeat_error")


async def _ping(session: Session, conn: Connection, hb: Heartbeat) -> bool:
    """Send a ping and wait for its pong; False when the connection was dropped for a missed pong."""
    loop = asyncio.get_running_loop()
    timeout = session.cfg.pong_timeout
    waiter = await conn.ws.ping()
    hb.ping_sent(loop.time())
    session.handler.ping_sent(conn)
    try:
        latency = await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        if session.paused or conn.done.is_set():
            return True
        hb.pong_missed()
        log.warning("connection %d: no pong within %.1fs; reconnecting", conn.id, timeout)
        session.handler.pong_timeout(conn)
        await drop(conn, "pong_timeout")
        return False
    hb.pong(loop.time())
    session.handler.pong(conn, latency)
    return True
