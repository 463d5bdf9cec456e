"""The heartbeat and idle-watchdog schedule of one connection, as pure state: what to do at a given time.

The session's watchdog task asks `next_action` on every tick and does the I/O (send a ping, wait for the
pong, drop the connection); this module holds the timing rules so they can be tested with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Action(Enum):
    """What the watchdog must do now."""

    WAIT = "wait"  # nothing is due
    PING = "ping"  # send a ping and wait up to pong_timeout for its pong
    IDLE = "idle"  # no frame for longer than idle_timeout: drop the connection


@dataclass
class Heartbeat:
    """Ping schedule, pong deadline and idle detection of one connection (times in loop seconds).

    Counting pings, pongs and latencies is the stream's job (its summary and metrics), not this schedule's.
    """

    ping_interval: float
    pong_timeout: float
    idle_timeout: float
    started: float
    next_ping: float = field(init=False)
    awaiting_since: float | None = None  # when the ping now waiting for its pong was sent

    def __post_init__(self) -> None:
        self.next_ping = self.started + self.ping_interval

    def tick_seconds(self) -> float:
        """How often the watchdog should look: often enough to catch both deadlines, at most once a second."""
        return max(0.05, min(1.0, self.idle_timeout / 4, self.ping_interval / 4))

    def next_action(self, now: float, last_frame: float, paused: bool = False) -> Action:
        """The action due at `now`; an idle link is dropped before any ping (a ping cannot revive it)."""
        if paused:  # pings and idle checks resume a full interval after the pause
            self.next_ping = now + self.ping_interval
            return Action.WAIT
        if now - last_frame > self.idle_timeout:
            return Action.IDLE
        if now >= self.next_ping:
            return Action.PING
        return Action.WAIT

    def ping_sent(self, now: float) -> None:
        """A ping went out at `now`; its pong is due within pong_timeout."""
        self.awaiting_since = now

    def pong_deadline(self) -> float | None:
        """When the awaited pong is late (None when no ping is outstanding)."""
        return None if self.awaiting_since is None else self.awaiting_since + self.pong_timeout

    def pong(self, now: float) -> None:
        """The pong arrived: schedule the next ping a full interval later."""
        self.awaiting_since = None
        self.next_ping = now + self.ping_interval

    def pong_missed(self) -> None:
        """No pong within pong_timeout: the connection is to be dropped."""
        self.awaiting_since = None
