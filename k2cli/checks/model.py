"""The validation model: a Step measures something and returns a Result; a Checklist orders Steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from k2cli.verdict import Status

if TYPE_CHECKING:
    from k2cli.checks.context import Context


# A dependency in one of these states lets its dependents run.
OK_STATUSES = frozenset({Status.PASS, Status.WARN, Status.MANUAL})
# Steps in one of these states are run again by --retry-timeout.
RETRY_STATUSES = frozenset({Status.FAIL, Status.ERROR, Status.SKIP})

Scalar = float | int | str | bool | None


@dataclass(frozen=True)
class Manual:
    """Why a check cannot be automated, and what a person must check instead."""

    reason: str
    check: str


@dataclass(frozen=True)
class Result:
    """What a step measured and how it compares with its threshold."""

    status: Status
    summary: str
    measured: Scalar = None
    threshold: str | None = None  # e.g. "< 5 s"
    unit: str = ""
    evidence: tuple[str, ...] = ()
    manual: Manual | None = None
    data: dict[str, Any] = field(default_factory=dict)  # structured extras for the JSON report
    duration: float = 0.0  # seconds, filled in by the runner
    attempts: int = 1  # filled in by the runner

    @classmethod
    def make(cls, status: Status, summary: str, **kwargs: Any) -> Result:
        """A result with evidence given as any iterable of lines."""
        if "evidence" in kwargs:
            kwargs["evidence"] = tuple(str(e) for e in kwargs["evidence"])
        return cls(status, summary, **kwargs)

    @classmethod
    def passed(cls, summary: str, **kwargs: Any) -> Result:
        """A PASS."""
        return cls.make(Status.PASS, summary, **kwargs)

    @classmethod
    def warned(cls, summary: str, **kwargs: Any) -> Result:
        """A WARN: acceptable, but a person should look."""
        return cls.make(Status.WARN, summary, **kwargs)

    @classmethod
    def failed(cls, summary: str, **kwargs: Any) -> Result:
        """A FAIL: measured and wrong."""
        return cls.make(Status.FAIL, summary, **kwargs)

    @classmethod
    def errored(cls, summary: str, **kwargs: Any) -> Result:
        """An ERROR: the step could not run."""
        return cls.make(Status.ERROR, summary, **kwargs)

    @classmethod
    def skipped(cls, summary: str, **kwargs: Any) -> Result:
        """A SKIP: a dependency did not pass."""
        return cls.make(Status.SKIP, summary, **kwargs)

    @classmethod
    def needs_person(cls, manual: Manual, summary: str = "", **kwargs: Any) -> Result:
        """A MANUAL result carrying the reason and the check a person must do."""
        return cls.make(Status.MANUAL, summary or manual.check, manual=manual, **kwargs)

    @classmethod
    def counted(cls, problems: list[str], passed: str, *, unit: str, evidence: Any = (),
                failed: str | None = None) -> Result:
        """FAIL on the first problem (or `failed`) with their count against '== 0' and them as evidence, else PASS."""
        if problems:
            return cls.make(Status.FAIL, failed or problems[0], measured=len(problems), threshold="== 0", unit=unit,
                            evidence=[*problems[:10], *evidence])
        return cls.make(Status.PASS, passed, measured=0, threshold="== 0", unit=unit, evidence=evidence)

    def with_timing(self, duration: float, attempts: int) -> Result:
        """The same result with the runner's timing."""
        return replace(self, duration=duration, attempts=attempts)


@dataclass(frozen=True)
class Step:
    """One executable check: `run(ctx)` measures something real and returns a Result."""

    id: str
    title: str
    objective: str
    run: Callable[[Context], Result] | None = None
    depends_on: tuple[str, ...] = ()
    manual: Manual | None = None  # set for steps a person must (also) check
    thresholds: tuple[str, ...] = ()  # names of the thresholds the step compares against
    retry: bool = True  # whether --retry-timeout may run it again

    @property
    def kind(self) -> str:
        """'auto' measures; 'manual' only describes a person's check; 'check+manual' measures what it can first
        (failing on what it finds) and can end MANUAL for what a person must still judge."""
        if self.run is None:
            return "manual"
        return "auto" if self.manual is None else "check+manual"

    def __post_init__(self) -> None:
        if self.run is None and self.manual is None:
            raise ValueError(f"step {self.id} has neither a run nor a manual check")


@dataclass(frozen=True)
class Checklist:
    """An ordered set of steps; a step may depend only on steps before it."""

    name: str
    title: str
    description: str
    steps: tuple[Step, ...]
    source: str = ""  # the seed section it implements

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"checklist {self.name}: duplicate step id {step.id}")
            for dep in step.depends_on:
                if dep not in seen:
                    raise ValueError(f"checklist {self.name}: step {step.id} depends on {dep}, "
                                     "which is not an earlier step")
            seen.add(step.id)

    def subset(self, step_ids: list[str] | tuple[str, ...]) -> Checklist:
        """The same checklist with only these steps and everything they depend on, in order."""
        known = {s.id: s for s in self.steps}
        unknown = [i for i in step_ids if i not in known]
        if unknown:
            raise KeyError(f"{self.name} has no step {unknown[0]!r}")
        wanted: set[str] = set()
        todo = list(step_ids)
        while todo:
            sid = todo.pop()
            if sid not in wanted:
                wanted.add(sid)
                todo.extend(known[sid].depends_on)
        return Checklist(self.name, self.title, self.description, tuple(s for s in self.steps if s.id in wanted),
                         self.source)

    def step(self, step_id: str) -> Step:
        """The step with this id."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


@dataclass(frozen=True)
class Event:
    """A progress event for a live display.

    kinds: checklist_started, round_started, step_started, step_progress, step_finished, checklist_finished.
    """

    kind: str
    checklist: str
    step_id: str | None = None
    index: int = 0  # 1-based position of the step
    total: int = 0  # steps in the checklist
    round: int = 1  # 1 for the first pass, 2.. for --retry-timeout rounds
    result: Result | None = None
    message: str = ""
