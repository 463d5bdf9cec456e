"""Make-before-break rotation: a new connection opens, covers the old one, then the old one closes."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from k2cli.errors import K2Error
from k2cli.exchanges.connection import Connection, drop, wait_any

if TYPE_CHECKING:
    from k2cli.exchanges.session import Session

log = logging.getLogger("k2.stream")


async def rotate(session: Session, old: Connection, reason: str) -> Connection | None:
    """Replace old by a new connection without a gap; a plain reconnect if old dies first."""
    stop = session.stop_event
    loop = asyncio.get_running_loop()
    log.info("connection %d: rotating (%s) after %.0fs", old.id, reason, old.age(loop.time()))
    while not stop.is_set():
        if old.done.is_set():  # the old connection died before a new one was ready: a plain reconnect
            await session.finish(old)
            session.handler.reconnecting(old.close_reason or "connection_closed")
            return await session.establish(first=False)
        try:
            new = await session.open()
        except K2Error:
            raise
        except Exception as exc:
            await session.sleep(session.dialer.attempt_failed(exc), old.done)
            continue
        started = loop.time()
        session.handler.handover_begin(old, new)
        waited = await _overlap(session, old, new, started)
        if new.done.is_set() and not stop.is_set():  # the new one failed during the overlap: retry
            await session.finish(new)
            session.handler.handover_end(new, old)  # roles swapped: forget new, keep old
            continue
        if not old.done.is_set():
            await drop(old, "rotation")
            await wait_any((old.done,), 5)
        await session.finish(old)
        session.handler.handover_end(old, new)
        session.handler.rotated(reason, loop.time() - started, waited)
        log.info("rotation done: connection %d replaced %d after %.2fs of overlap", new.id, old.id,
                 loop.time() - started)
        return new
    return old


async def _overlap(session: Session, old: Connection, new: Connection, started: float) -> list[str]:
    """Wait until the handler lets old close (or the overlap times out); what was still awaited."""
    loop = asyncio.get_running_loop()
    waited: list[str] = []
    while True:
        now = loop.time()
        if session.stop_event.is_set() or old.done.is_set() or new.done.is_set():
            return waited
        if new.first_frame_at is not None:
            quiet_ok = now - new.first_frame_at >= session.cfg.quiet_grace
            ready, waited = session.handler.handover_ready(old, new, quiet_ok)
            if ready:
                return waited
        if now - started > session.cfg.overlap_timeout:
            log.warning("rotation: closing connection %d after %.0fs of overlap while still waiting for %s",
                        old.id, now - started, ", ".join(waited) or "a first frame")
            return waited
        await session.sleep(0.02, new.done, old.done)
