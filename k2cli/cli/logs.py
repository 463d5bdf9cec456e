"""Log output of the long-running commands: UTC ISO 8601 times always, text (rich on a terminal, one unwrapped line
per event elsewhere) or JSON lines, at the level asked for."""

from __future__ import annotations

import datetime as _dt
import enum
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import typer

from k2cli.redaction import redact

if TYPE_CHECKING:
    from rich.console import Console


class LogFormat(enum.StrEnum):
    """How log lines are written on stderr."""

    text = "text"
    json = "json"


class LogLevel(enum.StrEnum):
    """The lowest level written."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LOG_FORMAT = typer.Option(LogFormat.text, "--log-format", case_sensitive=False, metavar="<text|json>",
                          help="Log lines on stderr: text (UTC times) or json (one object per line).")
LOG_LEVEL = typer.Option(None, "--log-level", case_sensitive=False, metavar="<level>",
                         help="Lowest level logged: debug, info, warning or error (default warning; info with "
                              "--verbose).")


def utc_iso(created: float) -> str:
    """A record's time as UTC ISO 8601 with milliseconds, e.g. 2026-12-07T13:34:32.013Z."""
    moment = _dt.datetime.fromtimestamp(created, _dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class UtcFormatter(logging.Formatter):
    """`TIME LEVEL message` with the time in UTC ISO 8601, whatever TZ says; secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{utc_iso(record.created)} {record.levelname} {record.getMessage()}"
        return redact(text + ("\n" + self.formatException(record.exc_info) if record.exc_info else ""))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC ISO 8601), level, logger, message (and exception text), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {"time": utc_iso(record.created), "level": record.levelname,
                                "logger": record.name, "message": redact(record.getMessage())}
        if record.exc_info:
            body["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(body, ensure_ascii=False)


def setup(names: tuple[str, ...], verbose: bool, level: LogLevel | None, fmt: LogFormat) -> Console:
    """Route the named loggers to stderr in the chosen format and level; the stderr console for live panels."""
    from rich.console import Console

    console = Console(stderr=True)
    handler: logging.Handler
    if fmt == LogFormat.text and console.is_terminal:
        from rich.logging import RichHandler
        from rich.text import Text

        handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False,
                              log_time_format=lambda moment: Text(utc_iso(moment.timestamp())))
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # pipes and files: one unwrapped line per event
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == LogFormat.json else UtcFormatter())
    threshold = getattr(logging, (level.value if level else ("info" if verbose else "warning")).upper())
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(threshold)
        logger.propagate = False
    return console
