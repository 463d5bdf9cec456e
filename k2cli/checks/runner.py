"""Run a checklist: steps in order, dependencies honoured, failing steps retried until green or out of time."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from k2cli.checks import evaluate
from k2cli.checks.context import Context
from k2cli.checks.model import OK_STATUSES, RETRY_STATUSES, Checklist, Event, Result, Status, Step
from k2cli.errors import K2Error, ServiceUnavailable
from k2cli.verdict import exit_code, worst


@dataclass(frozen=True)
class Outcome:
    """A step and its final result."""

    step: Step
    result: Result


@dataclass(frozen=True)
class Report:
    """Everything a reporter needs about one checklist run."""

    checklist: Checklist
    options: dict
    outcomes: tuple[Outcome, ...]
    started_at: float  # epoch seconds
    duration: float
    rounds: int

    @property
    def verdict(self) -> Status:
        """The overall status: the worst step; SKIP and MANUAL steps do not change it (see k2cli.verdict)."""
        return worst(o.result.status for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 all pass, 1 warnings only, 2 any failure, 3 could not run."""
        return exit_code(self.verdict)

    @property
    def counts(self) -> dict[str, int]:
        """Steps per status."""
        return evaluate.counts(o.result.status for o in self.outcomes)


def _blocked_by(step: Step, results: dict[str, Result]) -> list[str]:
    return [dep for dep in step.depends_on if results[dep].status not in OK_STATUSES]


def execute(step: Step, ctx: Context, results: dict[str, Result],
            clock: Callable[[], float] = time.monotonic) -> Result:
    """Evaluate one step: SKIP when a dependency did not pass, MANUAL when it has no run, else run it."""
    blocked = _blocked_by(step, results)
    if blocked:
        reasons = ", ".join(f"{dep} ({results[dep].status.value})" for dep in blocked)
        return Result.skipped(f"skipped: depends on {reasons}")
    if step.run is None:
        assert step.manual is not None
        return Result.needs_person(step.manual)
    started = clock()
    try:
        result = step.run(ctx)
    except ServiceUnavailable as exc:  # the step needed a service and measured it down
        result = Result.failed(str(exc))
    except K2Error as exc:
        result = Result.errored(f"could not run: {exc}")
    except Exception as exc:  # a bug in a step must not take the whole report down
        tail = traceback.format_exception(exc)[-3:]
        result = Result.errored(f"could not run: {exc.__class__.__name__}: {exc}",
                                evidence=[line.rstrip() for chunk in tail for line in chunk.splitlines()])
    if not isinstance(result, Result):
        result = Result.errored(f"could not run: step returned {type(result).__name__}, not a Result")
    if result.status is Status.MANUAL and result.manual is None and step.manual is not None:
        result = Result.needs_person(step.manual, result.summary, evidence=result.evidence, data=result.data)
    return result.with_timing(clock() - started, 1)


def run_checklist(
    checklist: Checklist,
    ctx: Context,
    *,
    retry_timeout: float = 0.0,
    retry_interval: float = 2.0,
    emit: Callable[[Event], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
) -> Report:
    """Run every step once; with retry_timeout > 0, re-run failing steps (and what they block) until green."""
    emit = emit or ctx.emit
    ctx.emit = emit
    ctx.checklist = checklist.name
    total = len(checklist.steps)
    results: dict[str, Result] = {}
    attempts: Counter[str] = Counter()
    started_wall, started = wall(), clock()
    deadline = started + max(retry_timeout, 0.0)
    emit(Event("checklist_started", checklist.name, total=total))

    def run_round(round_no: int, todo: set[str] | None) -> None:
        for index, step in enumerate(checklist.steps, start=1):
            if todo is not None and step.id not in todo:
                continue
            ctx.current_step = step.id
            emit(Event("step_started", checklist.name, step_id=step.id, index=index, total=total, round=round_no))
            attempts[step.id] += 1
            result = execute(step, ctx, results, clock)
            result = result.with_timing(result.duration, attempts[step.id])
            results[step.id] = result
            emit(Event("step_finished", checklist.name, step_id=step.id, index=index, total=total,
                       round=round_no, result=result))
        ctx.current_step = None

    rounds = 1
    try:
        run_round(1, None)
        while retry_timeout > 0:
            todo = {s.id for s in checklist.steps if s.retry and results[s.id].status in RETRY_STATUSES}
            retryable_failures = [i for i in todo if results[i].status is not Status.SKIP]
            if not retryable_failures or clock() + retry_interval >= deadline:
                break
            sleep(retry_interval)
            rounds += 1
            emit(Event("round_started", checklist.name, round=rounds, total=total,
                       message=f"retrying {len(todo)} step(s)"))
            run_round(rounds, todo)
    finally:
        ctx.close()
    outcomes = tuple(Outcome(step, results[step.id]) for step in checklist.steps)
    report = Report(checklist, ctx.options.as_dict(), outcomes, started_wall, clock() - started, rounds)
    emit(Event("checklist_finished", checklist.name, total=total, round=rounds, message=report.verdict.value))
    return report
