"""Static group membership ids: stable across restarts, distinct for consumers running side by side.

A consumer claims the lowest free slot for its (cluster, group) on this host with an exclusive flock on a slot
file; the kernel releases the lock when the process dies, however it dies. A restarted consumer therefore gets
the same `group.instance.id` back, and the broker hands it the dead member's partitions at once instead of
waiting for the session timeout; a second consumer started next to it gets the next slot.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
from pathlib import Path

MAX_SLOTS = 256


class SlotClaim:
    """A held slot; `close` (or process exit) releases it."""

    def __init__(self, instance_id: str, fd: int | None) -> None:
        self.instance_id = instance_id
        self._fd = fd

    def close(self) -> None:
        """Release the slot."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def slot_dir() -> Path:
    """Where slot files live (host-wide, per user)."""
    return Path(tempfile.gettempdir()) / f"k2-consumer-slots-{os.getuid()}"


def claim_instance_id(group: str, bootstrap: str, explicit: str = "", directory: Path | None = None,
                      hostname: str | None = None) -> SlotClaim:
    """An explicit id as given, else `<group>-<host>-<slot>` for the lowest slot no live process holds."""
    if explicit:
        return SlotClaim(explicit, None)
    directory = directory or slot_dir()
    directory.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9._-]", "-", hostname or socket.gethostname())[:64]
    key = hashlib.sha1(f"{bootstrap}\0{group}".encode()).hexdigest()[:16]
    for slot in range(MAX_SLOTS):
        fd = os.open(directory / f"{key}.{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return SlotClaim(f"{group}-{host}-{slot}", fd)
    raise RuntimeError(f"more than {MAX_SLOTS} consumers of group {group} on this host")
