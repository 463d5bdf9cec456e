"""Bring the whole local stack up, report on it, and take down what `up` started."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from k2cli.stack import install, proc
from k2cli.stack.config import StackConfig, load_stack_config
from k2cli.stack.errors import PortInUse, ServiceStartError
from k2cli.stack.health import Health, port_bindable, wait_for
from k2cli.stack.paths import StackPaths
from k2cli.stack.progress import Progress, quiet
from k2cli.stack.services import Service, all_services


@dataclass(frozen=True)
class ServiceState:
    """What `up` did with, or `status` found of, one service."""

    name: str
    running: bool
    pid: int | None
    healthy: bool
    detail: str
    listen: str
    log: str
    # up: "started", "already running" or "restarted" (its configuration changed); down: "stopped", "killed",
    # "not running"
    action: str = ""
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stack:
    """The services of one K2_HOME, in start order."""

    def __init__(self, cfg: StackConfig, paths: StackPaths, services: list[Service] | None = None) -> None:
        self.cfg = cfg
        self.paths = paths
        self.services = services if services is not None else all_services(cfg, paths)

    @classmethod
    def from_settings(cls, settings: Any = None, extras: tuple[str, ...] = ()) -> Stack:
        """The stack of the settings' K2_HOME; `extras`: optional services to include (`up --with`)."""
        cfg = load_stack_config(settings)
        paths = StackPaths.for_home(cfg.home)
        return cls(cfg, paths, all_services(cfg, paths, extras))

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per K2_HOME; a second one waits for the first."""
        self.paths.ensure()
        with open(self.paths.lock_file, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------------------------------ install
    def install(self, progress: Progress = quiet) -> dict[str, str]:
        with self._locked():
            return install.install_all(self.paths, progress)

    # ------------------------------------------------------------------------------------------ up
    def up(self, progress: Progress = quiet, timeout: float | None = None) -> list[ServiceState]:
        """Start every service that is not running and wait until all are healthy (idempotent)."""
        with self._locked():
            to_start = [svc for svc in self.services if svc.pid() is None]
            # Ports first, so a clash is reported before anything is installed or started.
            for svc in to_start:
                for port in svc.ports():
                    if not port_bindable(port):
                        raise PortInUse(svc.name, port)
            for svc in to_start:
                svc.install(progress)
            states = []
            for svc in self.services:
                states.append(self._up_one(svc, progress, timeout))
            return states

    def _up_one(self, svc: Service, progress: Progress, timeout: float | None) -> ServiceState:
        began = time.monotonic()
        limit = timeout or svc.start_timeout
        pid = svc.pid()
        if pid is not None:
            health = wait_for(svc.ready, limit, alive=_alive(pid))
            if not health.ok:
                raise ServiceStartError(svc.name, f"is running (pid {pid}) but not healthy: {health.detail}",
                                        str(svc.log_file))
            svc.after_start(progress)
            svc.refresh(progress)  # may restart it (a changed Kafka configuration)
            restarted = svc.pid()
            action = "restarted" if restarted is not None and restarted != pid else "already running"
            pid = restarted or pid
        else:
            for port in svc.ports():  # a service started earlier in this `up` may not take a later one's port
                if not port_bindable(port):
                    raise PortInUse(svc.name, port)
            svc.prepare(progress)
            progress(f"starting {svc.name}")
            record = svc.start()
            pid = record.pid
            health = wait_for(svc.ready, limit, alive=lambda: proc.is_running(record.pid))
            if not health.ok:
                code = proc.exit_status(record.pid)
                svc.stop()
                reason = (f"exited with code {code} while starting" if code is not None and "exited" in health.detail
                          else f"did not become healthy: {health.detail}")
                raise ServiceStartError(svc.name, reason, str(svc.log_file))
            svc.after_start(progress)
            action = "started"
        final = svc.health()
        if not final.ok:
            final = wait_for(svc.health, 30, alive=_alive(pid))
            if not final.ok:
                raise ServiceStartError(svc.name, f"is not healthy: {final.detail}", str(svc.log_file))
        return ServiceState(name=svc.name, running=True, pid=pid, healthy=True, detail=final.detail,
                            listen=svc.listen(), log=str(svc.log_file), action=action,
                            seconds=round(time.monotonic() - began, 1))

    # ------------------------------------------------------------------------------------------ down
    def down(self, progress: Progress = quiet) -> list[ServiceState]:
        """Stop the processes `up` started (and only those), in reverse start order."""
        with self._locked():
            states = []
            for svc in reversed(self.services):
                pid = svc.pid()
                began = time.monotonic()
                if pid is not None:
                    progress(f"stopping {svc.name} (pid {pid})")
                outcome = svc.stop()
                states.append(ServiceState(name=svc.name, running=False, pid=pid, healthy=False, detail="",
                                           listen=svc.listen(), log=str(svc.log_file), action=outcome,
                                           seconds=round(time.monotonic() - began, 1)))
            return states

    # ------------------------------------------------------------------------------------------ status
    def status(self) -> list[ServiceState]:
        """Each service's process and health, as it is now."""
        states = []
        for svc in self.services:
            pid = svc.pid()
            try:
                health = svc.health()
            except Exception as exc:
                health = Health(False, f"{type(exc).__name__}: {exc}")
            detail = health.detail
            if pid is None and health.ok:
                detail += " (answering, but not started by this K2_HOME's `k2 stack up`)"
            elif pid is None:
                detail = f"not running ({detail})"
            states.append(ServiceState(name=svc.name, running=pid is not None, pid=pid, healthy=health.ok,
                                       detail=detail, listen=svc.listen(), log=str(svc.log_file)))
        return states


def _alive(pid: int) -> Callable[[], bool]:
    """Whether the process `pid` is still running, as a probe for wait_for."""
    return lambda: proc.is_running(pid)
