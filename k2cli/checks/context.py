"""What a running step can use: settings, options, thresholds, state shared between steps, progress, cleanup."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2cli.checks import thresholds
from k2cli.checks.evaluate import describe, judge
from k2cli.checks.model import Event, Result, Status
from k2cli.exchanges import registry

if TYPE_CHECKING:
    from k2cli.settings import Settings



@dataclass(frozen=True)
class Options:
    """Flags of `k2 validate` that change what a checklist measures."""

    exchange: str = registry.default().name
    url: str | None = None  # a simulator (ws://) instead of the public exchange
    phase: str | None = None  # deploy: "pre" or "post"
    rehearsal_minutes: float = 0.0  # deploy --post --rehearse: the local pipeline ran this long before the checks

    def as_dict(self) -> dict[str, Any]:
        """The options as plain values, for reports."""
        return asdict(self)


class Context:
    """One checklist run's environment; `state` carries measurements from a step to the steps after it."""

    def __init__(self, settings: Settings, options: Options | None = None,
                 emit: Callable[[Event], None] | None = None, checklist: str = "") -> None:
        self.settings = settings
        self.options = options or Options()
        self.state: dict[str, Any] = {}
        self.checklist = checklist
        self.current_step: str | None = None
        self.emit: Callable[[Event], None] = emit or (lambda event: None)
        self._cleanups = contextlib.ExitStack()
        self._workdir: Path | None = None

    # ---- thresholds

    def threshold(self, name: str) -> float:
        """The value in force for a threshold: k2.toml [thresholds], else the seeds' default."""
        return self.settings.threshold(name, thresholds.get(name).default)

    def describe(self, name: str) -> str:
        """A threshold as text, e.g. '< 5 s'."""
        spec = thresholds.get(name)
        return describe(spec.op, self.threshold(name), spec.unit)

    def check(self, name: str, measured: float | int | None, summary: str, *,
              evidence: Iterable[str] = (), data: dict[str, Any] | None = None) -> Result:
        """Judge a measurement against a named threshold and build the Result."""
        spec = thresholds.get(name)
        if not spec.op:
            raise ValueError(f"threshold {name} is a run parameter, not a limit")
        status = judge(measured, spec.op, self.threshold(name))
        return Result.make(status, summary, measured=measured, threshold=self.describe(name), unit=spec.unit,
                           evidence=evidence, data=data or {})

    def holds(self, name: str, measured: float | int | None) -> bool:
        """Whether a measurement meets a named threshold."""
        spec = thresholds.get(name)
        return judge(measured, spec.op, self.threshold(name)) is Status.PASS

    # ---- progress and resources

    def progress(self, message: str) -> None:
        """Tell the live display what the current step is doing."""
        self.emit(Event("step_progress", self.checklist, step_id=self.current_step, message=message))

    def on_close(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run a clean-up (stop a process, delete a scratch topic) when the checklist ends."""
        self._cleanups.callback(callback, *args)

    @property
    def workdir(self) -> Path:
        """A scratch directory for this run, removed at the end."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="k2-validate-"))
            self.on_close(shutil.rmtree, self._workdir, True)
        return self._workdir

    def close(self) -> None:
        """Run every clean-up, most recent first."""
        self._cleanups.close()
