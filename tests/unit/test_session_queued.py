"""queued_messages(): messages already received are taken from websockets' queue exactly as recv() would
return them (text, binary, fragmented and the order kept), over a real loopback WebSocket."""

from __future__ import annotations

import asyncio

from k2cli.exchanges.session import _queue_layout_ok, queued_messages

SENT: list = ["a", b"\x00\x01", "é" * 300, ["frag", "mented"], "x" * 70_000, b"", "", "last"]
EXPECTED = ["a", b"\x00\x01", "é" * 300, "fragmented", "x" * 70_000, b"", "", "last"]


async def _exchange(use_queue: bool) -> tuple[list, int]:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def handler(ws):
        for message in SENT:
            await ws.send(message)
        await ws.close()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_queue=512) as ws:
            await asyncio.sleep(0.2)  # everything arrives and waits in the queue
            take = queued_messages(ws) if use_queue else None
            got, from_queue = [], 0
            while True:
                raw = take() if take is not None else None
                if raw is not None:
                    from_queue += 1
                else:
                    try:
                        raw = await ws.recv()
                    except Exception:
                        break
                got.append(raw)
    return got, from_queue


def test_queued_messages_match_recv_and_are_taken_without_awaiting():
    assert _queue_layout_ok()  # the websockets version the project locks is the one this reads
    plain, _ = asyncio.run(_exchange(use_queue=False))
    queued, from_queue = asyncio.run(_exchange(use_queue=True))
    assert plain == EXPECTED
    assert queued == EXPECTED and [type(m) for m in queued] == [type(m) for m in EXPECTED]
    assert from_queue >= 5  # most came straight from the queue; the fragmented one went through recv()


def test_queued_messages_is_none_for_an_unknown_connection():
    class Other:
        pass

    assert queued_messages(Other()) is None
