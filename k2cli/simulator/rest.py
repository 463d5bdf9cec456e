"""The simulator's REST side: plain HTTP GETs on the WebSocket's port, answered by the venue's RestApi over the
market's history, behind the core's rate limit, bans and injected faults.

Per request, in order: a client (by address) banned, or going on within the Retry-After of a rate-limit
answer on a venue that bans (its RestApi.ban_status), gets that status; over --rest-rate-limit (a token
bucket: N per second, bursts of N) a 429 with Retry-After; every --rest-429-every-th request a 429 with
Retry-After: 1; every --rest-5xx-every-th a 503, then 500, in turn; else the venue answers. Every answer
waits --rest-delay-ms first. Answers are counted by status in the stats.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from k2cli.simulator.config import SimulatorConfig, SimulatorStats
    from k2cli.simulator.history import TradeHistory
    from k2cli.simulator.venues.base import RestAnswer, RestApi

Verdict = Literal["serve", "rate_limited", "banned", "server_error"]


class RestGate:
    """The rate limit, the bans and the injected faults, on a clock that tests can replace."""

    def __init__(self, rate_limit: float, every_429: int, every_5xx: int, bans: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_limit
        self.every_429, self.every_5xx, self.bans = every_429, every_5xx, bans
        self.clock = clock
        self.requests = 0
        self.errors_5xx = 0
        self._tokens = float(max(1.0, rate_limit))
        self._refilled = clock()
        self._limited: dict[str, tuple[float, int]] = {}  # client -> (end of its Retry-After, the Retry-After)
        self._banned: dict[str, float] = {}  # client -> end of its ban

    def decide(self, client: str) -> tuple[Verdict, int]:
        """What this request gets: ("serve", 0), ("rate_limited" | "banned", Retry-After), ("server_error", status)."""
        now = self.clock()
        self.requests += 1
        if self.bans:
            banned = self._ban(client, now)
            if banned:
                return "banned", banned
        if self.rate and not self._take(now):
            return "rate_limited", self._limit(client, now, max(1, math.ceil((1.0 - self._tokens) / self.rate)))
        if self.every_429 and self.requests % self.every_429 == 0:
            return "rate_limited", self._limit(client, now, 1)
        if self.every_5xx and self.requests % self.every_5xx == 0:
            self.errors_5xx += 1
            return "server_error", 503 if self.errors_5xx % 2 else 500
        return "serve", 0

    def _ban(self, client: str, now: float) -> int:
        """Seconds left of the client's ban (a new one, twice the ignored Retry-After, when it goes on within it)."""
        until = self._banned.get(client, 0.0)
        if now < until:
            return math.ceil(until - now)
        limited_until, retry_after = self._limited.get(client, (0.0, 0))
        if now < limited_until:
            self._banned[client] = now + 2 * retry_after
            return 2 * retry_after
        return 0

    def _take(self, now: float) -> bool:
        """Take a token from the bucket (refilled at `rate` per second up to `rate`); False when empty."""
        self._tokens = min(max(1.0, self.rate), self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _limit(self, client: str, now: float, retry_after: int) -> int:
        self._limited[client] = (now + retry_after, retry_after)
        return retry_after


class RestService:
    """Answers the REST requests of one simulator."""

    def __init__(self, cfg: SimulatorConfig, api: RestApi, history: TradeHistory, stats: SimulatorStats) -> None:
        self.api, self.history, self.stats = api, history, stats
        self.delay = cfg.rest_delay_ms / 1000.0
        self.gate = RestGate(cfg.rest_rate_limit, cfg.rest_429_every, cfg.rest_5xx_every, api.ban_status is not None)

    def answer(self, target: str, client: str) -> RestAnswer:
        """The answer to GET `target` (path and query) from `client` (its address), counted by status."""
        verdict, value = self.gate.decide(client)
        api = self.api
        if verdict == "banned":
            answer = _with_retry_after(api.error(api.ban_status or 429, "banned: requests went on within "
                                                 "Retry-After"), value)
        elif verdict == "rate_limited":
            answer = _with_retry_after(api.error(429, "rate limit exceeded"), value)
        elif verdict == "server_error":
            answer = api.error(value, "injected server error")
        else:
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            found = api.answer(parts.path, query, self.history)
            answer = found if found is not None else api.error(404, f"no such path: {parts.path}")
        answer = api.finish(answer, time.time())
        key = str(answer.status)
        self.stats.rest_requests[key] = self.stats.rest_requests.get(key, 0) + 1
        return answer

    async def respond(self, connection: Any, target: str) -> Any:
        """The websockets Response for a plain HTTP GET (after --rest-delay-ms)."""
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        client = str((connection.remote_address or ("?",))[0])
        answer = self.answer(target, client)
        if self.delay:
            await asyncio.sleep(self.delay)
        body = answer.body.encode()
        headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
                           ("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body))),
                           *answer.headers])
        try:
            phrase = HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = "I'm a teapot" if answer.status == 418 else "Error"
        return Response(answer.status, phrase, headers, body)


def _with_retry_after(answer: RestAnswer, seconds: int) -> RestAnswer:
    return answer._replace(headers=(*answer.headers, ("Retry-After", str(seconds))))


def wants_websocket(headers: Any) -> bool:
    """True for a WebSocket opening handshake (Upgrade: websocket), False for a plain HTTP request."""
    return any(value.strip().lower() == "websocket" for value in headers.get_all("Upgrade"))
