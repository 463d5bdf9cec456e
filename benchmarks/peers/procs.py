"""The peers' processes: each in its own process group, peak RSS of the tree sampled, all killed on exit."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_LIVE: set[int] = set()  # process groups this harness started and has not reaped


def _kill_all(*_: object) -> None:
    for pgid in list(_LIVE):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _LIVE.discard(pgid)


def install_cleanup() -> None:
    """Kill every process group we started when the harness exits, is interrupted or terminated."""
    atexit.register(_kill_all)

    def on_signal(signum: int, _frame: object) -> None:
        _kill_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


class Tree:
    """One started process (the leader of its own group) and the peak RSS of it plus its children."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: str | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in reap()
        self.started = time.time()
        self.proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._out, start_new_session=True)
        _LIVE.add(self.proc.pid)
        self.peak_rss = 0
        self.stdout = b""
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while not self._done.is_set():
            rss = 0
            with contextlib.suppress(psutil.Error):
                for p in (root, *root.children(recursive=True)):
                    with contextlib.suppress(psutil.Error):
                        rss += p.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
            self._done.wait(0.5)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM to the group, SIGKILL after `grace` s; reaps and returns the exit status."""
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        return self.reap()

    def reap(self) -> int:
        """Wait for the leader, kill what is left of its group, stop sampling."""
        code = self.proc.wait()
        self.kill(signal.SIGKILL)  # children the leader left behind (Spark's JVM under pyspark)
        _LIVE.discard(self.proc.pid)
        self._done.set()
        self._reader.join(5)
        self._out.close()
        return code

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
