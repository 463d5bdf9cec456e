"""The stack's progress callback: one line on what is happening now (an install step, a service starting)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """Show no progress."""
