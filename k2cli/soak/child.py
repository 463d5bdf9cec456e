"""A soak's child process (`k2 stream` or `k2 consume`): started with its log file, its memory read, stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from k2cli.proc import start, stop

LOG_TAIL_LINES = 25


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel send SIGTERM to the child if the soak itself dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of a log file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = [line.rstrip() for line in deque(data.splitlines(), maxlen=lines)]
    return out or [f"(nothing in {path.name})"]


class Child:
    """One child process with its log file and metrics port."""

    def __init__(self, name: str, argv: list[str], log_path: Path, port: int, env: dict[str, str]) -> None:
        self.name, self.argv, self.log_path, self.port = name, argv, log_path, port
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        kwargs: dict[str, Any] = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = _die_with_parent
        # own session: a Ctrl-C in the terminal reaches the soak, which then stops the child in order
        self.proc = start(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, **kwargs)
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        return self.proc.poll()

    def memory(self) -> tuple[int, int]:
        info = self.ps.memory_info()
        return int(info.rss), int(info.vms)

    def stop(self, timeout: float) -> int | None:
        """SIGTERM its process group, wait, then SIGKILL the group; returns the exit status."""
        code = stop(self.proc, grace=timeout, kill_wait=10)
        self._log.close()
        return code
