"""Opening exchange WebSocket connections: TLS, the URL list with failover, failure classification and backoff."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl

from k2cli.errors import ConfigError, ServiceUnavailable
from k2cli.exchanges.connection import Connection, SessionConfig, SessionHandler
from k2cli.reliability.retry import Backoff, Retries

log = logging.getLogger("k2.stream")


class TLSRefused(ServiceUnavailable):
    """The exchange's TLS certificate did not verify."""


def build_ssl_context(verify: bool = True, ca_bundle: str = "") -> ssl.SSLContext:
    """A client TLS context: certifi's roots plus an optional CA bundle; verify=False turns checking off."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    import certifi

    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle:
        try:
            ctx.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca-bundle {ca_bundle!r} cannot be loaded: {exc}", setting="K2_CA_BUNDLE") from None
    return ctx


def classify(exc: BaseException) -> tuple[str, str]:
    """(error_type, one-line detail) of a failed connection attempt."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    if isinstance(exc, InvalidStatus):
        return "http_status", f"HTTP {exc.response.status_code}"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout", "timed out opening the connection"
    if isinstance(exc, OSError) and exc.__class__.__name__ == "gaierror":
        return "dns", f"name resolution failed: {exc}"
    if isinstance(exc, ConnectionClosed):
        return "closed", "closed during the handshake"
    if isinstance(exc, InvalidHandshake):
        return "handshake", f"handshake failed: {exc}"
    if isinstance(exc, OSError):
        return "other", f"{exc.__class__.__name__}: {exc.strerror or exc}"
    return "other", f"{exc.__class__.__name__}: {exc}"


class Dialer:
    """Opens connections to the configured URLs in turn; counts consecutive failures for the backoff."""

    def __init__(self, config: SessionConfig, handler: SessionHandler) -> None:
        self.cfg = config
        self.handler = handler
        # uniform in [d/2, d], d = min(max, initial * 2^(n-1)) after n consecutive failures
        self.retries = Retries(Backoff(config.backoff_initial, config.backoff_max, multiplier=2.0, jitter=0.5))
        self._ids = itertools.count(1)
        self._url_index = 0
        self._ever_connected = False
        self._ssl = build_ssl_context(config.ssl_verify, config.ca_bundle) if any(
            u.startswith("wss://") for u in config.urls) else None

    def attempt_failed(self, exc: BaseException) -> float:
        """Count a failed attempt and move to the next URL; the delay before the next one (raises at the limit)."""
        url = self.cfg.urls[self._url_index]
        error_type, detail = classify(exc)
        delay = self.retries.failed()
        failures = self.retries.failures
        if len(self.cfg.urls) > 1:
            self._url_index = (self._url_index + 1) % len(self.cfg.urls)
        if self.cfg.max_reconnects and failures >= self.cfg.max_reconnects:
            raise ServiceUnavailable(f"gave up after {failures} failed connection attempts; last: {url}: "
                                     f"{detail}", setting="K2_MAX_RECONNECTS")
        self.handler.attempt_failed(url, error_type, detail, delay)
        log.warning("connection to %s failed (%s); retrying in %.1fs", url, detail, delay)
        return delay

    async def open(self) -> Connection:
        """Connect to the current URL and send the subscribe messages (operator mistakes raise ConfigError)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, InvalidURI

        url = self.cfg.urls[self._url_index]
        try:
            ws = await connect(
                url, ssl=self._ssl if url.startswith("wss://") else None,
                ping_interval=None, ping_timeout=None, close_timeout=2, open_timeout=self.cfg.open_timeout,
                max_size=self.cfg.max_frame_bytes, max_queue=512, user_agent_header="k2",
            )
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or "certificate verify failed"
            raise TLSRefused(f"TLS certificate of {url} was refused: {reason} (trust its CA with --ca-bundle FILE, "
                             "or pass --insecure for testing only)", setting="K2_CA_BUNDLE") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if not self._ever_connected and 400 <= status < 500 and status not in (408, 429):
                raise ConfigError(f"{url} refused the WebSocket upgrade with HTTP {status} (check --url and "
                                  "--symbols)", setting=self.cfg.url_setting) from None
            raise
        except InvalidURI as exc:
            raise ConfigError(f"{url} is not a WebSocket URL: {exc}", setting=self.cfg.url_setting) from None
        conn = Connection(next(self._ids), url, ws, asyncio.get_running_loop().time())
        try:
            for message in self.cfg.subscribe:
                await ws.send(message)
        except Exception:
            await ws.close()
            raise
        self._ever_connected = True
        return conn
