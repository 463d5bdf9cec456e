"""A static member fenced: rejoin once with a new client, but never fight another holder of the id.

A consumer whose session times out behind a network cut can be fenced by its own rejoin (the broker swaps in a
new member id while the old one still answers: a fatal error, confluentinc/librdkafka#3437). A new client with the
same `group.instance.id` recovers from that. Fenced again soon after a rejoin means another live process holds the
id; fighting it would only bounce partitions between the two, so the run ends there.
"""

from __future__ import annotations

REJOIN_WINDOW = 60.0  # seconds after a rejoin in which a second fencing ends the run


def is_fencing(text: str) -> bool:
    """Whether a fatal Kafka error is a fencing by a member with the same group.instance.id."""
    return "static consumer fenced" in text.lower()


class Rejoins:
    """Decides, fencing by fencing, whether a new client may rejoin."""

    def __init__(self, window: float = REJOIN_WINDOW) -> None:
        self.window = window
        self.count = 0
        self._last: float | None = None

    def allow(self, error: str, now: float) -> bool:
        """True for a fencing more than `window` seconds after the last rejoin (that rejoin is then recorded)."""
        if not is_fencing(error) or (self._last is not None and now - self._last < self.window):
            return False
        self._last = now
        self.count += 1
        return True

    def refusal(self, error: str, instance_id: str) -> str:
        """The line that ends the run when a fencing is not followed by a rejoin."""
        if not is_fencing(error) or not self.count:
            return error
        return (f"{error}; fenced again within {self.window:.0f} s of rejoining: another consumer is running with "
                f"group.instance.id {instance_id} (give each consumer its own --instance-id)")
