"""Faults injected into the k2 processes a red-path test starts: K2_TEST_CHILD_FAULT=<fault>:<k2 command>.

Python imports this module at start-up when its directory leads PYTHONPATH; only the named command is
changed (`python -m k2cli <command> ...`), every other k2 process of the test runs as shipped.
"""

import os
import signal
import sys


def _command() -> str:
    argv = list(getattr(sys, "orig_argv", []))
    if "k2cli" in argv and argv.index("k2cli") + 1 < len(argv):
        return argv[argv.index("k2cli") + 1]
    return ""


def _inject(fault: str) -> None:
    if fault == "ignore-sigterm":  # blocked, not handled: the signal stays pending for the life of the process
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    elif fault == "no-gap-detection":  # a consumer whose sequence tracker never reports anything
        from k2cli.reliability.sequence import SequenceTracker

        SequenceTracker.check_many = lambda self, *args: []  # type: ignore[method-assign]
    elif fault == "slow-backoff":  # a stream that ignores the backoff it was given
        os.environ["K2_BACKOFF_INITIAL"] = "1.0"
    elif fault == "dlq-drops-value":  # dead letters written without the original bytes
        from k2cli.reliability.dlq import DLQEntry

        original = DLQEntry.to_json

        def to_json(self: DLQEntry) -> str:
            self.value = None
            return original(self)

        DLQEntry.to_json = to_json  # type: ignore[method-assign]
    else:
        raise SystemExit(f"childfault: unknown fault {fault!r}")


_fault, _, _target = os.environ.get("K2_TEST_CHILD_FAULT", "").partition(":")
if _fault and _command() == _target:
    _inject(_fault)
