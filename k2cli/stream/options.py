"""What one `k2 stream` run does beyond the settings: the exchange, symbols, URLs, topic and bounds."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from k2cli.errors import ConfigError
from k2cli.exchanges import registry
from k2cli.settings import Settings


@dataclass(frozen=True)
class StreamOptions:
    """What one `k2 stream` run does, beyond the settings."""

    exchange: str  # a registered exchange's name
    symbols: tuple[str, ...]  # checked, in the exchange's subscription form
    urls: tuple[str, ...]  # primary first, then failovers (base URLs: the connection plan may add to them)
    topic: str
    max_messages: int = 0  # 0 = unbounded
    duration: float = 0.0  # 0 = unbounded
    metrics_port: int = 0  # 0 = no endpoint
    metrics_addr: str = "0.0.0.0"
    tick_interval: float = 0.5  # how often on_tick is called
    rest_url: str = ""  # the exchange's REST API for the gap backfill; empty: gaps are only counted
    backfill_max_trades: int = 100_000  # a gap wider than this is reported unfilled


def rest_url_for(settings: Settings, exchange: str, primary_ws_url: str, rest_url: str | None = None) -> str:
    """The REST base URL of the backfill: --rest-url, else the setting; while that is the exchange's default and
    the WebSocket URL is on another host than the exchange's (a simulator), that URL's own origin (http/https)."""
    desc = registry.get(exchange)
    if rest_url:
        chosen = rest_url
    else:
        chosen = settings.exchange(exchange).rest_url or desc.default_rest_url
        ws = urlsplit(primary_ws_url)
        if chosen == desc.default_rest_url and ws.netloc and ws.hostname != urlsplit(desc.default_url).hostname:
            chosen = urlunsplit(("https" if ws.scheme == "wss" else "http", ws.netloc, "", "", ""))
    parts = urlsplit(chosen)
    if chosen and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ConfigError(f"--rest-url {chosen!r} is not an http:// or https:// URL", setting=desc.setting("rest_url"))
    return chosen


def build_options(settings: Settings, exchange: str, *, symbols: tuple[str, ...] | None = None,
                  url: str | None = None, failover_urls: tuple[str, ...] | None = None, topic: str | None = None,
                  max_messages: int = 0, duration: float = 0.0, metrics_port: int | None = None,
                  rest_url: str | None = None) -> StreamOptions:
    """Resolve a run's options from settings and flags; an explicit --url drops the default failovers."""
    desc = registry.get(exchange)
    conf = settings.exchange(exchange)
    checked = desc.check_symbols(symbols or conf.symbols)
    primary = url or conf.url
    if failover_urls is None:
        failover_urls = () if url else conf.failover_urls
    urls = tuple(dict.fromkeys((primary, *failover_urls)))
    for u in urls:
        if not u.startswith(("ws://", "wss://")):
            raise ConfigError(f"--url {u!r} is not a ws:// or wss:// URL", setting=desc.setting("url"))
    desc.check_urls(urls)
    if max_messages < 0 or duration < 0:
        raise ConfigError("--max-messages and --duration must be 0 (unbounded) or more")
    port = conf.metrics_port if metrics_port is None else metrics_port
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port {port} is not a port 0..65535", setting=desc.setting("metrics_port"))
    backfill = settings.backfill and desc.rest is not None
    return StreamOptions(exchange=exchange, symbols=checked, urls=urls, topic=topic or conf.topic,
                         max_messages=max_messages, duration=duration, metrics_port=port,
                         rest_url=rest_url_for(settings, exchange, primary, rest_url) if backfill else "",
                         backfill_max_trades=settings.backfill_max_trades)
