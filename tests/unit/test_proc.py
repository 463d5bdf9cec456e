"""The child-process helper with real short-lived children: own session, group signalled, SIGKILL after the grace."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from k2cli import proc

# A parent that starts a sleeping grandchild, prints the grandchild's pid and waits.
_PARENT = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
           "print(c.pid, flush=True); time.sleep(60)")
# A child that ignores SIGTERM: only SIGKILL ends it.
_STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
             "time.sleep(60)")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_child_leads_its_own_session():
    child = proc.start([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    try:
        assert os.getsid(child.pid) == child.pid
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    finally:
        proc.stop(child, grace=5)


def test_stop_signals_the_whole_group_and_returns_the_exit_status():
    child = proc.start([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    assert _alive(grandchild)
    code = proc.stop(child, grace=5)
    assert code == -signal.SIGTERM
    assert _gone_within(grandchild, 5), "the grandchild outlived the stop: only the pid was signalled"


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace():
    child = proc.start([sys.executable, "-c", _STUBBORN], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"ready"
    started = time.monotonic()
    code = proc.stop(child, grace=0.5)
    assert code == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5


def test_stop_of_a_finished_child_returns_its_exit_code():
    child = proc.start([sys.executable, "-c", "raise SystemExit(7)"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    child.wait(timeout=10)
    assert proc.stop(child) == 7


def test_signal_group_of_a_gone_process_says_so():
    child = proc.start([sys.executable, "-c", "pass"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child.wait(timeout=10)
    assert proc.signal_group(child.pid, signal.SIGTERM) is False


def test_child_env_is_unbuffered_and_takes_overrides():
    env = proc.child_env({"K2_EXAMPLE": "1"})
    assert env["PYTHONUNBUFFERED"] == "1" and env["K2_EXAMPLE"] == "1"
    assert proc.k2_argv(["stack", "status"]) == [sys.executable, "-m", "k2cli", "stack", "status"]


def test_free_port_can_be_bound():
    import socket

    port = proc.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
