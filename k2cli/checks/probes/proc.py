"""Run other k2 commands (`python -m k2cli ...`) as subprocesses, with timeouts and peak-memory sampling."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from k2cli.errors import K2Error
from k2cli.proc import child_env, k2_argv, stop
from k2cli.proc import start as start_child


class StepError(K2Error):
    """A step could not get what it needs from another command (the step reports ERROR)."""


def show(args: Sequence[str]) -> str:
    """A command as an operator would type it."""
    return "k2 " + shlex.join(list(args))




def error_line(stderr: str) -> str:
    """The most telling line of a command's stderr: its `k2: error:` line, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("k2: error:"):
            return line
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class Completed:
    """A finished k2 command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    peak_rss: int = 0  # bytes, when sampled

    @property
    def command(self) -> str:
        """The command line."""
        return show(self.args)

    def json(self) -> Any:
        """stdout parsed as JSON (the last JSON document when the command printed several lines)."""
        text = self.stdout.strip()
        try:
            return json.loads(text)
        except ValueError:
            pass
        for start in (i for i, ch in enumerate(text) if ch in "{[" and (i == 0 or text[i - 1] == "\n")):
            try:
                return json.loads(text[start:])
            except ValueError:
                continue
        raise StepError(f"`{self.command}` did not print JSON: {text[:200]!r}")


def rss_tree(pid: int) -> int:
    """Resident memory of a process and its children, in bytes (0 when it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total
    except psutil.Error:
        return 0


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace")


def run_k2(args: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
           sample_rss: bool = False, on_tick: Callable[[float], None] | None = None) -> Completed:
    """Run a k2 command to completion; raise StepError on timeout."""
    argv = k2_argv(args)
    started = time.monotonic()
    peak = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = start_child(argv, stdout=out, stderr=err, stdin=None, env=child_env(env))
        try:
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                elapsed = time.monotonic() - started
                if sample_rss:
                    peak = max(peak, rss_tree(proc.pid))
                if on_tick is not None:
                    on_tick(elapsed)
                if elapsed > timeout:
                    stop(proc)
                    raise StepError(f"`{show(args)}` did not finish within {timeout:g} s; "
                                    f"last output: {error_line(_read(err)) or _read(out)[-200:]!r}")
        finally:
            if proc.poll() is None:
                stop(proc)
        done = Completed(tuple(args), proc.returncode, _read(out), _read(err), time.monotonic() - started, peak)
    return done


@dataclass
class Spawned:
    """A k2 command running in the background, its output going to files."""

    args: tuple[str, ...]
    proc: subprocess.Popen
    stdout_path: str
    stderr_path: str
    started: float

    @property
    def command(self) -> str:
        """The command line."""
        return show(self.args)

    def output(self) -> tuple[str, str]:
        """(stdout, stderr) so far."""
        with open(self.stdout_path, "rb") as out, open(self.stderr_path, "rb") as err:
            return out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.proc.poll() is None

    def finish(self, timeout: float) -> Completed:
        """Wait for it to exit (StepError after timeout, the process is then stopped)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc)
            raise StepError(f"`{self.command}` did not finish within {timeout:g} s") from None
        stdout, stderr = self.output()
        return Completed(self.args, self.proc.returncode, stdout, stderr, time.monotonic() - self.started)

    def stop(self) -> Completed:
        """SIGTERM it (SIGKILL if it lingers) and return what it printed."""
        stop(self.proc)
        stdout, stderr = self.output()
        return Completed(self.args, self.proc.returncode, stdout, stderr, time.monotonic() - self.started)


def spawn_k2(args: Sequence[str], directory: str, env: Mapping[str, str] | None = None) -> Spawned:
    """Start a k2 command in the background; stdout/stderr go to files in directory."""
    fd_out, out_path = tempfile.mkstemp(prefix="out-", suffix=".log", dir=directory)
    fd_err, err_path = tempfile.mkstemp(prefix="err-", suffix=".log", dir=directory)
    try:
        proc = start_child(k2_argv(args), stdout=fd_out, stderr=fd_err, stdin=None, env=child_env(env))
    finally:
        os.close(fd_out)
        os.close(fd_err)
    return Spawned(tuple(args), proc, out_path, err_path, time.monotonic())


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll until condition() is truthy (returned) or timeout (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
