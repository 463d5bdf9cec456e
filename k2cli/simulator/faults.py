"""The faults a simulator injects per connection, timed from when the connection opened.

drop_every (abrupt close, no close frame), stall_after (send nothing more, connection kept open),
shutdown_every (the venue's shutdown notice, then a close after shutdown_grace) and fault_cycle (each connection in
turn dropped, stalled or muted: its pings no longer answered) are scheduled here; no_pong (no ping answered on any
connection) and the mute are a connection class; garbage frames (after every N data frames) and per-connection lag
are applied where frames are sent; skipped ids are the tape's.
"""

from __future__ import annotations

from typing import Any, Literal

from k2cli.simulator.config import SimulatorConfig

Action = Literal["drop", "stall", "mute", "notice", "close"]
CYCLE: tuple[Action, ...] = ("drop", "stall", "mute")  # fault_cycle's kinds, one per connection in turn


class FaultSchedule:
    """What is due on one connection at a given time: nothing, a drop, a stall, a mute, a shutdown notice, its
    close. `number` counts the server's connections from 0 (fault_cycle's turn)."""

    def __init__(self, cfg: SimulatorConfig, opened: float, number: int = 0) -> None:
        self.cfg = cfg
        self.opened = opened
        self.shutdown_at: float | None = None
        self.cycled: Action | None = CYCLE[number % len(CYCLE)] if cfg.fault_cycle else None

    def due(self, now: float) -> list[Action]:
        """The actions due at `now`, in order (a notice is followed by its close when there is no grace)."""
        cfg = self.cfg
        age = now - self.opened
        if cfg.drop_every and age >= cfg.drop_every:
            return ["drop"]
        if cfg.stall_after and age >= cfg.stall_after:
            return ["stall"]
        if self.cycled is not None and age >= cfg.fault_cycle:
            action = self.cycled
            if action == "mute":
                self.cycled = None  # muted once; its data goes on until the client gives up on it
            return [action]
        actions: list[Action] = []
        if cfg.shutdown_every and self.shutdown_at is None and age >= cfg.shutdown_every:
            self.shutdown_at = now
            actions.append("notice")
        if self.shutdown_at is not None and now - self.shutdown_at >= cfg.shutdown_grace:
            actions.append("close")
        return actions


def pong_switch_connection_class(answer_pings: bool) -> type:
    """A ServerConnection whose pongs can be switched off (`answers_pings`; off from the start: the no_pong fault)."""
    from websockets.asyncio.server import ServerConnection
    from websockets.frames import Opcode

    class PongSwitchConnection(ServerConnection):
        answers_pings = answer_pings

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            send_frame = self.protocol.send_frame

            def drop_pongs(frame: Any) -> None:
                if self.answers_pings or frame.opcode is not Opcode.PONG:
                    send_frame(frame)

            self.protocol.send_frame = drop_pongs  # type: ignore[method-assign]

    return PongSwitchConnection
