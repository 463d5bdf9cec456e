"""What a simulator serves and which faults it injects, checked once, and the counters of a run."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2cli.errors import ConfigError
from k2cli.simulator.venues import load_venue, venue_names

if TYPE_CHECKING:
    from k2cli.simulator.venues.base import OptionValue, Venue


@dataclass(frozen=True)
class SimulatorConfig:
    """What to serve and which faults to inject."""

    exchange: str  # a venue name (k2cli.simulator.venues)
    symbols: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 0
    rate: float = 100.0  # trades per second, 0 = as fast as the clients read
    seed: int = 1
    first_id: int = 0  # each symbol's first trade id; 0: from the clock (µs since the epoch), so ids never repeat
    tape_file: Path | None = None
    record_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ping_interval: float = 20.0  # server pings (0 = none); the client must answer within ping_timeout
    ping_timeout: float = 60.0
    heartbeat_interval: float = 1.0  # the venue's heartbeat when idle (venues that have one)
    buffer_events: int = 200_000
    drop_every: float = 0.0
    no_pong: bool = False
    stall_after: float = 0.0
    fault_cycle: float = 0.0  # S seconds into each connection: drop, stall, mute (pings unanswered), in turn
    garbage_every: int = 0
    skip_ids_every: int = 0
    shutdown_every: float = 0.0  # venues with a shutdown notice only
    shutdown_grace: float = 5.0
    lag_ms: float = 0.0  # each connection gets a fixed delivery delay drawn from 0..lag_ms (connections drift apart)
    rest_history: int = 1_000_000  # trades kept per symbol for the REST endpoints (older ones are forgotten)
    rest_rate_limit: float = 0.0  # REST requests per second (0 = no limit)
    rest_429_every: int = 0
    rest_5xx_every: int = 0
    rest_delay_ms: float = 0.0
    options: Mapping[str, OptionValue] = field(default_factory=dict)  # the venue's own options (VenueOption.name)


@dataclass
class SimulatorStats:
    """Counters of one simulator run."""

    connections: int = 0
    open_connections: int = 0
    events: int = 0
    trades: int = 0
    frames_sent: int = 0
    garbage_sent: int = 0
    drops: int = 0
    shutdowns_sent: int = 0
    slow_consumers: int = 0
    refused: int = 0
    rest_requests: dict[str, int] = field(default_factory=dict)  # REST answers by HTTP status
    history_forgotten: int = 0  # trades dropped from the REST history past --rest-history
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        out = {k: v for k, v in self.__dict__.items() if k != "started"}
        out["uptime_seconds"] = round(time.monotonic() - self.started, 3)
        return out


def venue_of(cfg: SimulatorConfig) -> Venue:
    """The venue a config names (a ConfigError naming the registered ones when there is none)."""
    return load_venue(cfg.exchange)


def check_config(cfg: SimulatorConfig) -> SimulatorConfig:
    """Normalise the symbols and reject impossible combinations with one clear line."""
    venue = venue_of(cfg)
    symbols = []
    for raw in cfg.symbols:
        try:
            symbols.append(venue.normalise_symbol(raw))
        except ValueError as exc:
            raise ConfigError(f"--symbols: {exc}") from None
    if not symbols:
        raise ConfigError("--symbols: give at least one symbol")
    if cfg.rate < 0:
        raise ConfigError("--rate must be 0 (full speed) or more")
    for flag, value in (("--first-id", cfg.first_id), ("--fault-cycle", cfg.fault_cycle),
                        ("--rest-history", cfg.rest_history),
                        ("--rest-rate-limit", cfg.rest_rate_limit),
                        ("--rest-429-every", cfg.rest_429_every), ("--rest-5xx-every", cfg.rest_5xx_every),
                        ("--rest-delay-ms", cfg.rest_delay_ms)):
        if value < 0:
            raise ConfigError(f"{flag} must be 0 or more")
    unknown = set(cfg.options) - {o.name for o in venue.options}
    if unknown:
        raise ConfigError(f"{venue.title} has no option {', '.join(sorted(unknown))}")
    venue.check(cfg)
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if cfg.shutdown_every and venue.shutdown_notice is None:
        raise ConfigError(_no_shutdown_notice(venue))
    if cfg.tape_file is not None and not Path(cfg.tape_file).is_file():
        raise ConfigError(f"--tape {cfg.tape_file}: no such file")
    if cfg.tape_file is not None and cfg.skip_ids_every:
        raise ConfigError("--skip-ids-every works on a generated tape, not on --tape")
    return replace(cfg, symbols=tuple(dict.fromkeys(symbols)))


def _no_shutdown_notice(venue: Venue) -> str:
    """Why --shutdown-every is refused for a venue: which venues have such a notice."""
    others = [v for v in map(load_venue, venue_names()) if v.shutdown_notice]
    return (f"--shutdown-every is a {' or '.join(v.title for v in others)} fault "
            f"({', '.join(str(v.shutdown_notice) for v in others)}); {venue.title} has no such notice")
