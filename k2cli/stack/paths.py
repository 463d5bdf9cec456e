"""Where the local stack keeps its downloads, configuration, data, pid files and logs.

    $K2_HOME/cache/          jars and archives, reused across runs (or $K2_CACHE_DIR)
    $K2_HOME/stack/<svc>/    generated configuration and data of each service
    $K2_HOME/run/<svc>.pid   pid files of the processes `k2 stack up` started
    $K2_HOME/logs/<svc>.log  one log per service
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Files shipped inside the package (poms, config templates).
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "stack"


@dataclass(frozen=True)
class StackPaths:
    """The directory layout of one K2_HOME."""

    home: Path
    cache: Path

    @classmethod
    def for_home(cls, home: Path, cache: Path | None = None) -> StackPaths:
        """The layout under `home`; the cache is `cache`, else $K2_CACHE_DIR, else home/cache."""
        home = Path(home).expanduser().absolute()
        if cache is None:
            env_cache = os.environ.get("K2_CACHE_DIR")
            cache = Path(env_cache).expanduser() if env_cache else home / "cache"
        return cls(home=home, cache=Path(cache).absolute())

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def service_dir(self, name: str) -> Path:
        """Configuration and data of one service."""
        return self.home / "stack" / name

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @property
    def lock_file(self) -> Path:
        return self.run / "stack.lock"

    def ensure(self) -> None:
        """Create the directories every command needs."""
        for path in (self.cache, self.run, self.logs, self.home / "stack"):
            path.mkdir(parents=True, exist_ok=True)


def find_deploy_dir() -> Path | None:
    """The repository's deploy/ directory (Prometheus config template and alert rules), if present."""
    candidates = []
    if os.environ.get("K2_DEPLOY_DIR"):
        candidates.append(Path(os.environ["K2_DEPLOY_DIR"]).expanduser())
    candidates.append(Path(__file__).resolve().parent.parent.parent / "deploy")
    candidates.append(Path.cwd() / "deploy")
    for candidate in candidates:
        if (candidate / "prometheus" / "prometheus.yml.tmpl").is_file():
            return candidate.absolute()
    return None
