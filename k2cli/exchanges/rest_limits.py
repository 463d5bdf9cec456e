"""What a REST answer means for the next call: go on, wait and retry, back off and retry, or give up. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from k2cli.exchanges.rest_dialect import RestLimits

Action = Literal["ok", "wait", "backoff", "give_up"]
# on_request labels: one per HTTP call
Label = Literal["200", "429", "418", "4xx", "5xx", "timeout", "error"]

DEFAULT_RETRY_AFTER = 1.0  # seconds waited on a 429/418 without a usable Retry-After
MAX_RETRY_AFTER = 300.0  # a ban longer than this ends the backfill (RestGaveUp) instead of stalling it


@dataclass(frozen=True)
class Decision:
    """What to do after one answer: `wait` seconds before the next attempt (for "wait"), and the call's label."""

    action: Action
    label: Label
    wait: float = 0.0
    reason: str = ""


def label_of(status: int) -> Label:
    """The on_request label of an HTTP status."""
    if status == 200 or status == 429 or status == 418:
        return str(status)  # type: ignore[return-value]  # one of the three literals
    return "5xx" if status >= 500 else "4xx" if status >= 400 else "error"


def retry_after(headers: Mapping[str, str], now_epoch: float = 0.0) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), or None when absent or unusable."""
    text = (headers.get("retry-after") or headers.get("Retry-After") or "").strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(text).timestamp() - now_epoch)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def decide(status: int, headers: Mapping[str, str], reason: str = "", now_epoch: float = 0.0) -> Decision:
    """The decision after an HTTP answer: 200 ok; 429/418 wait Retry-After; 5xx back off; other 4xx give up."""
    label = label_of(status)
    if status == 200:
        return Decision("ok", label)
    if status in (429, 418):
        wait = retry_after(headers, now_epoch)
        if wait is not None and wait > MAX_RETRY_AFTER:
            return Decision("give_up", label, wait, f"HTTP {status}: Retry-After {wait:.0f} s is too long ({reason})")
        return Decision("wait", label, DEFAULT_RETRY_AFTER if wait is None else wait, f"HTTP {status} ({reason})")
    if status >= 500:
        return Decision("backoff", label, reason=f"HTTP {status} ({reason})")
    return Decision("give_up", label, reason=f"HTTP {status}: {reason}")


def weight_pause(headers: Mapping[str, str], limits: RestLimits, epoch_s: float) -> float:
    """Seconds to wait before the next call so the used weight stays under k2's share of the minute's limit.

    The weight counter resets at each wall-clock minute; at or above the share, wait for the next minute."""
    if not limits.weight_header or limits.weight_limit <= 0:
        return 0.0
    raw = headers.get(limits.weight_header.lower()) or headers.get(limits.weight_header)
    try:
        used = int(str(raw).strip()) if raw is not None else None
    except ValueError:
        used = None
    if used is None or used + limits.call_weight <= limits.weight_limit * limits.weight_share:
        return 0.0
    return 60.0 - epoch_s % 60.0


def pace_wait(last_call: float | None, now: float, limits: RestLimits) -> float:
    """Seconds to wait so two calls are at least the venue's minimum interval apart (monotonic clock)."""
    if last_call is None or limits.min_interval <= 0:
        return 0.0
    return max(0.0, last_call + limits.min_interval - now)
