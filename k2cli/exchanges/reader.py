"""The reader of one connection: frames to the handler, its signals acted on."""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from k2cli.exchanges.connection import SIG_BLOCKED, SIG_DATA, SIG_FATAL, SIG_SHUTDOWN, Connection

if TYPE_CHECKING:
    from k2cli.exchanges.session import Session

log = logging.getLogger("k2.stream")


def queued_messages(ws: Any) -> Callable[[], str | bytes | None] | None:
    """A function that takes the next message websockets has already received and queued, or returns None.

    `await ws.recv()` goes through three coroutines per message even when one is waiting; at tens of
    thousands of frames a second that is a good part of the receive cost. This reads the queue of the
    websockets asyncio Assembler directly, for the simple case only: one complete text or binary frame
    that decodes. Anything else (nothing queued, a fragmented message, invalid UTF-8, a recv() in
    progress) returns None and the caller awaits recv(), which handles it as always. None (no function)
    when the connection is not laid out as this expects (another websockets version)."""
    from websockets.frames import Opcode

    assembler: Any = getattr(ws, "recv_messages", None)
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
        message: str | bytes = data
        if opcode is text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                return None  # recv() fails the connection with the right close code
        queue.popleft()
        resume()
        return message

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


async def read_frames(session: Session, conn: Connection) -> None:
    """Hand every frame of conn to the handler until it closes; sets conn.done (and its close reason)."""
    from websockets.exceptions import ConnectionClosed

    try:
        await _read(session, conn)
    except ConnectionClosed:
        pass
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in frame handling: stop loudly instead of reconnecting forever
        log.exception("connection %d: frame handling failed", conn.id)
        session.crashed(exc)
    finally:
        if conn.close_reason is None:
            conn.close_reason = "connection_closed"
            code = getattr(conn.ws, "close_code", None)
            log.warning("connection %d to %s closed by the peer or network (code %s)", conn.id, conn.url, code)
        conn.done.set()


async def _read(session: Session, conn: Connection) -> None:
    from websockets.exceptions import ConnectionClosedOK

    handler = session.handler
    clock = asyncio.get_running_loop().time
    recv = conn.ws.recv  # what `async for raw in conn.ws` does, without the async generator in between
    queued = queued_messages(conn.ws)
    while True:
        raw = queued() if queued is not None else None
        if raw is None:
            try:
                raw = await recv()
            except ConnectionClosedOK:
                return
        now = conn.last_frame = clock()
        if conn.first_frame_at is None:
            conn.first_frame_at = now
        sig = handler.on_frame(conn, raw)
        if not sig:
            continue
        if sig & SIG_DATA and conn.first_data_at is None:
            conn.first_data_at = now
            session.dialer.retries.reset()
        if sig & SIG_SHUTDOWN:
            log.warning("connection %d: the exchange announced a shutdown; rotating", conn.id)
            conn.shutdown.set()
        if sig & SIG_FATAL:
            conn.close_reason = "fatal"
            session.stop_now()
            return
        if sig & SIG_BLOCKED:
            await _wait_unblocked(session, clock)


async def _wait_unblocked(session: Session, clock: Callable[[], float]) -> None:
    """Stop reading until downstream can take more; the idle watchdog restarts from then on every connection."""
    session.paused = True
    try:
        await session.handler.wait_unblocked()
    finally:
        session.paused = False
        resumed = clock()
        for c in session.connections:
            c.last_frame = resumed
