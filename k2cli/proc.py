"""Child processes: start one in its own process group (session), signal the whole group, stop it.

A child started here leads a new session, so a Ctrl-C in the terminal reaches only k2 (which then stops the
child in order) and a stop reaches the child's own children too."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

Output = int | IO[Any] | None  # what Popen takes for stdout/stderr: a file, a descriptor, DEVNULL/STDOUT/PIPE


def k2_argv(args: Sequence[str]) -> list[str]:
    """The argv that runs k2 with this interpreter."""
    return [sys.executable, "-m", "k2cli", *args]


def child_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus overrides, unbuffered so output arrives as it is written."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    return env


def start(argv: Sequence[str], *, stdout: Output, stderr: Output, stdin: Output = subprocess.DEVNULL,
          env: Mapping[str, str] | None = None, cwd: str | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """Start argv as the leader of a new session (its own process group)."""
    return subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd,
                            env=dict(env) if env is not None else None, start_new_session=True, **popen)


def signal_group(pid: int, sig: int) -> bool:
    """Send sig to the process group pid leads (to pid alone when it leads none); False when it is gone."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def stop(proc: subprocess.Popen[Any], grace: float = 10.0, kill_wait: float = 5.0,
         sig: int = signal.SIGTERM) -> int | None:
    """`sig` (SIGTERM) to the child's process group, SIGKILL to it after `grace` seconds; the exit status."""
    if proc.poll() is not None:
        return proc.returncode
    if not signal_group(proc.pid, sig):
        return proc.poll()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=kill_wait)
    return proc.returncode


def free_port() -> int:
    """A TCP port that was free a moment ago (bind 0), for a child to listen on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
