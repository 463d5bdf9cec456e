"""Processes the stack starts: spawn detached, remember them in pid files, and recognise them later.

A pid file records the pid, the process start time (from /proc) and the command line. A pid counts
as ours only while a live process has that pid AND the same start time, so a recycled pid is never
signalled."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from k2cli.proc import signal_group, start


@dataclass(frozen=True)
class PidRecord:
    """What `up` wrote about a process it started."""

    service: str
    pid: int
    start_ticks: int
    cmd: list[str]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2:].split()


def start_ticks(pid: int) -> int | None:
    """The start time of a live (non-zombie) process in clock ticks since boot, else None."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    return start_ticks(pid) is not None


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (no zombie is left behind)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def spawn(service: str, cmd: Sequence[str], log_file: Path, pid_file: Path, *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, user: str | None = None) -> PidRecord:
    """Start `cmd` in its own session with stdout and stderr appended to `log_file`; write the pid file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n==== k2 stack: starting {service} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user, group=user, extra_groups=[])
        proc = start(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(cwd) if cwd else None, env=env,
                     close_fds=True, **kwargs)
    ticks = start_ticks(proc.pid)
    if ticks is None:  # it died at once; keep a record so the caller can report its exit
        _reap(proc.pid)
        ticks = -1
    record = PidRecord(service=service, pid=proc.pid, start_ticks=ticks, cmd=list(cmd))
    write_pid_file(pid_file, record)
    return record


def write_pid_file(pid_file: Path, record: PidRecord) -> None:
    """Write the pid file atomically (a reader never sees half of it)."""
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(pid_file)


def read_pid_file(pid_file: Path) -> PidRecord | None:
    try:
        data = json.loads(pid_file.read_text())
        return PidRecord(service=str(data["service"]), pid=int(data["pid"]), start_ticks=int(data["start_ticks"]),
                         cmd=[str(c) for c in data.get("cmd", [])])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def owned_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that very process is still running, else None."""
    record = read_pid_file(pid_file)
    if record is None:
        return None
    _reap(record.pid)
    ticks = start_ticks(record.pid)
    if ticks is None or ticks != record.start_ticks:
        return None
    return record.pid


def stop(pid_file: Path, sig: int = signal.SIGTERM, timeout: float = 30.0) -> str:
    """Stop the process of a pid file if it is ours: `sig`, then SIGKILL after `timeout`.

    Returns "stopped", "killed", or "not running"; the pid file is removed in every case."""
    pid = owned_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return "not running"
    ticks = start_ticks(pid)
    outcome = "stopped"
    # The stop signal goes to the service alone: it shuts its own helpers down in its own order.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not wait_exit(pid, ticks, timeout):
        outcome = "killed"
        signal_group(pid, signal.SIGKILL)  # the whole session: the service and any helper it forked
        wait_exit(pid, ticks, 10.0)
    pid_file.unlink(missing_ok=True)
    return outcome


def wait_exit(pid: int, ticks: int | None, timeout: float) -> bool:
    """Wait until the process (identified by pid and start time) is gone; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        current = start_ticks(pid)
        if current is None or current != ticks:
            return True
        time.sleep(0.1)
    return False


def exit_status(pid: int) -> int | None:
    """The exit code of our own child that has ended, if it can still be collected."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)
