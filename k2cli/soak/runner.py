"""The soak runner: start `k2 stream` (and `k2 consume`) as child processes, sample them, stop, report.

The children are the real processes being judged: RSS and VMS come from psutil on their pids, the
counters from their own /metrics endpoints. The soak clock starts when the stream's endpoint first
answers; there is one sample at the end of every interval (1,440 for 24 h at 60 s).
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from k2cli.proc import child_env, free_port, k2_argv
from k2cli.soak import criteria
from k2cli.soak.child import Child, tail
from k2cli.soak.profile import (
    ABORTED,
    COMPLETED,
    CONSUMER_LOG_SUFFIX,
    CRASHED,
    INTERRUPTED,
    MB,
    NOT_RUN,
    RUNNING,
    STREAM_LOG_SUFFIX,
    ProfileWriter,
    RunRecord,
    Sample,
    path_for,
    write_run,
)
from k2cli.soak.sampler import Sampler
from k2cli.soak.scrape import ScrapeError, fetch

POLL_S = 0.25  # how often the waits look at the children and the stop flag


@dataclass
class SoakPlan:
    """What to soak and for how long."""

    exchange: str
    url: str
    duration_s: float
    sample_interval_s: float
    output_dir: Path
    consumer: bool = False
    topic: str | None = None
    symbols: str | None = None
    consumer_group: str | None = None
    startup_timeout_s: float = 90.0
    stop_timeout_s: float = 20.0
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the children
    stream_args: list[str] = field(default_factory=list)  # extra `k2 stream` flags

    @property
    def sample_count(self) -> int:
        """Samples a complete run takes: one at the end of every whole interval."""
        return max(1, int(self.duration_s // self.sample_interval_s + 1e-9))


@dataclass(frozen=True)
class SoakEvent:
    """Progress for a live display: kind is starting, ready, sample or finished."""

    kind: str
    plan: SoakPlan
    record: RunRecord
    sample: Sample | None = None
    samples_taken: int = 0
    message: str = ""


@dataclass
class SoakResult:
    """A finished run: its record, samples, evaluation and report text."""

    record: RunRecord
    samples: list[Sample]
    evaluation: criteria.Evaluation
    report_text: str

    @property
    def exit_code(self) -> int:
        """The verdict as an exit code."""
        return self.evaluation.exit_code


def _stream_argv(plan: SoakPlan, port: int) -> list[str]:
    # --verbose: connections, reconnects and rotations go to the log the report quotes after a crash
    argv = k2_argv(["stream", plan.exchange, "--url", plan.url, "--metrics-port", str(port), "--verbose"])
    if plan.topic:
        argv += ["--topic", plan.topic]
    if plan.symbols:
        argv += ["--symbols", plan.symbols]
    return argv + list(plan.stream_args)


def _consumer_argv(plan: SoakPlan, port: int) -> list[str]:
    argv = k2_argv(["consume", "--metrics-port", str(port), "--verbose"])
    if plan.topic:
        argv += ["--topics", plan.topic]
    if plan.consumer_group:
        argv += ["--group", plan.consumer_group]
    return argv


class SoakRunner:
    """Runs one soak; `stop()` (from a signal handler or another thread) ends it with a partial report."""

    def __init__(self, plan: SoakPlan, thresholds: dict[str, float],
                 on_event: Callable[[SoakEvent], None] | None = None) -> None:
        self.plan = plan
        self.thresholds = dict(thresholds)
        self.on_event = on_event or (lambda event: None)
        self._stop = threading.Event()
        self._stop_reason = ""
        self.samples: list[Sample] = []
        self.stream: Child | None = None
        self.consumer: Child | None = None
        self._profile = ProfileWriter(plan.output_dir, plan.exchange)
        from k2cli import __version__

        self.record = RunRecord(
            exchange=plan.exchange, url=plan.url, planned_duration_s=float(plan.duration_s),
            sample_interval_s=float(plan.sample_interval_s),
            warmup_s=criteria.warmup_seconds(plan.duration_s, self.thresholds), thresholds=self.thresholds,
            host=platform.node(), k2_version=__version__,
        )

    # ---- control
    def stop(self, reason: str = "interrupted") -> None:
        """Ask the run to end after the current step; safe from a signal handler."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def _emit(self, kind: str, sample: Sample | None = None, message: str = "") -> None:
        self.on_event(SoakEvent(kind, self.plan, self.record, sample, len(self.samples), message))

    # ---- children
    def _stream(self) -> Child:
        """The stream child (started by _start before any sampling)."""
        if self.stream is None:
            raise RuntimeError("the stream process has not been started")
        return self.stream

    def _children(self) -> list[Child]:
        return [c for c in (self.stream, self.consumer) if c is not None]

    def _start(self) -> bool:
        """Start the children and wait until their metrics endpoints answer; False if they never do."""
        self._spawn()
        return self._wait_ready()

    def _spawn(self) -> None:
        """Start the stream (and the consumer) and write the run record with their commands and pids."""
        out = self.plan.output_dir
        env = child_env(self.plan.env)
        port = free_port()
        argv = _stream_argv(self.plan, port)
        self.record.stream_command = argv
        self.stream = Child("stream", argv, path_for(out, self.plan.exchange, STREAM_LOG_SUFFIX), port, env)
        self.record.stream_pid = self.stream.pid
        if self.plan.consumer:
            cport = free_port()
            cargv = _consumer_argv(self.plan, cport)
            self.record.consumer_command = cargv
            self.consumer = Child("consumer", cargv, path_for(out, self.plan.exchange, CONSUMER_LOG_SUFFIX), cport,
                                  env)
            self.record.consumer_pid = self.consumer.pid
        write_run(out, self.record)
        self._emit("starting", message=f"started stream pid {self.stream.pid}")

    def _wait_ready(self) -> bool:
        """Wait until every child's metrics endpoint answers; False (and why in the record) if one never does."""
        deadline = time.monotonic() + self.plan.startup_timeout_s
        pending = {c.name: c for c in self._children()}
        while pending:
            for name, child in list(pending.items()):
                code = child.exited()
                if code is not None:
                    return self._not_ready(child, f"the {name} process exited before its metrics endpoint "
                                                  f"answered: {criteria.describe_exit(code)}")
                try:
                    fetch(child.metrics_url, timeout=1.0)
                    del pending[name]
                except ScrapeError:
                    pass
            if not pending:
                break
            if time.monotonic() > deadline:
                child = next(iter(pending.values()))
                return self._not_ready(child, f"the {child.name} metrics endpoint {child.metrics_url} did not "
                                              f"answer within {self.plan.startup_timeout_s:g} s")
            if self._stop.wait(POLL_S):
                self.record.status, self.record.end_reason = INTERRUPTED, f"{self._stop_reason} while starting"
                return False
        return True

    def _not_ready(self, child: Child, reason: str) -> bool:
        self.record.status = NOT_RUN
        self.record.end_reason = reason
        self.record.log_tail = tail(child.log_path)
        return False

    # ---- the run
    def _crashed_child(self) -> Child | None:
        return next((c for c in self._children() if c.exited() is not None), None)

    def _wait_until(self, due: float) -> str | None:
        """Sleep until the monotonic instant `due`; returns 'stop' or 'crash' if the run must end first."""
        while True:
            if self._crashed_child() is not None:
                return "crash"
            remaining = due - time.monotonic()
            if remaining <= 0:
                return None
            if self._stop.wait(min(remaining, POLL_S)):
                return "stop"

    def _over_hard_limit(self, s: Sample) -> str | None:
        hard = self.thresholds["soak_rss_hard_max_mb"]
        if s.rss_bytes / MB > hard:
            return f"stream RSS {s.rss_bytes / MB:.1f} MB went above the hard limit of {hard:g} MB"
        chard = self.thresholds["soak_consumer_rss_hard_max_mb"]
        if s.consumer is not None and s.consumer.rss_bytes / MB > chard:
            return f"consumer RSS {s.consumer.rss_bytes / MB:.1f} MB went above the hard limit of {chard:g} MB"
        return None

    def _loop(self, sampler: Sampler, t0: float) -> None:
        n = self.plan.sample_count
        interval = self.plan.sample_interval_s
        for k in range(1, n + 1):
            why = self._wait_until(t0 + k * interval)
            if why == "stop":
                self.record.status, self.record.end_reason = INTERRUPTED, self._stop_reason
                return
            child = self._crashed_child() if why == "crash" else None
            if child is not None:
                code = child.exited()
                self.record.status = CRASHED
                self.record.end_reason = (f"the {child.name} process (pid {child.pid}) exited on its own after "
                                          f"{time.monotonic() - t0:.1f} s: {criteria.describe_exit(code)}")
                self.record.log_tail = tail(child.log_path)
                return
            try:
                sample = sampler.sample(time.monotonic() - t0, self.samples)
            except Exception as exc:  # psutil.NoSuchProcess: the child died between the poll and the read
                if self._crashed_child() is not None:
                    continue  # the next wait reports the crash with its exit status
                raise exc
            self.samples.append(sample)
            self._profile.append(sample)
            self._emit("sample", sample)
            over = self._over_hard_limit(sample)
            if over:
                self.record.status, self.record.end_reason = ABORTED, over
                return
        self.record.status = COMPLETED

    def run(self) -> SoakResult:
        """Run the soak to its end (or until stopped) and write every output file."""
        from k2cli.soak.report import write_outputs

        out = self.plan.output_dir
        out.mkdir(parents=True, exist_ok=True)
        try:
            if self._start():
                sampler = Sampler(self.plan.exchange, self.record, self._stream(), self.consumer)
                sampler.baseline()
                self.record.started_at = time.time()
                self.record.status = RUNNING
                write_run(out, self.record)
                self._profile.flush()
                self._emit("ready", message=f"stream metrics at {self._stream().metrics_url}")
                self._loop(sampler, time.monotonic())
        except (OSError, ValueError) as exc:  # e.g. a child could not be started, a file not written
            self.record.status = NOT_RUN
            self.record.end_reason = f"the soak could not go on: {exc}"
        finally:
            self._shutdown()
        self.record.ended_at = time.time()
        if not self.record.started_at:
            self.record.started_at = self.record.ended_at
        write_run(out, self.record)
        self._profile.flush()
        evaluation, text = write_outputs(out, self.record, self.samples)
        self._emit("finished", message=self.record.end_reason)
        return SoakResult(self.record, self.samples, evaluation, text)

    def _shutdown(self) -> None:
        """Stop the children (the consumer first, so it can commit what the stream gave it)."""
        if self.record.status == RUNNING:
            self.record.status, self.record.end_reason = INTERRUPTED, "the soak runner stopped unexpectedly"
        if self.consumer is not None:
            self.record.consumer_exit = self.consumer.stop(self.plan.stop_timeout_s)
        if self.stream is not None:
            self.record.stream_exit = self.stream.stop(self.plan.stop_timeout_s)
