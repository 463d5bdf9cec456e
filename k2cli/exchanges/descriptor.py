"""What k2 knows about one exchange, in one frozen value: the rest of k2 asks this, never the exchange's name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from k2cli.exchanges.base import Parsed, Row

if TYPE_CHECKING:
    from k2cli.exchanges.rest_dialect import RestDialect


class Parser(Protocol):
    """Turns one frame into a Parsed result (raising FrameError for an unusable one)."""

    def parse(self, raw: str | bytes, ingest_us: int) -> Parsed[dict[str, Any]]:
        """Trades as v2 records (dicts)."""
        ...

    def parse_rows(self, raw: str | bytes, ingest_us: int) -> Parsed[Row]:
        """Trades as rows in k2cli.trade.FIELDS order (the stream's hot path)."""
        ...


@dataclass(frozen=True)
class ConnectionPlan:
    """How a stream talks to the exchange: the session's URLs, what it sends on connect, how it reads frames."""

    urls: tuple[str, ...]  # the URLs the session connects to, primary first
    subscribe: tuple[str, ...]  # messages sent after each connect (empty: the URL itself subscribes)
    parser: Parser
    sequential_ids: bool  # trade ids consecutive per symbol: dedup keys on source_sequence, else on trade_id
    # id-less feeds whose dedup key carries the trade's time: that time (µs), for the gap backfill by time window
    key_time: Callable[[Any], int] | None = None


@dataclass(frozen=True)
class StreamExpectation:
    """What the streaming checklist expects of a live stream (seed 000's Expected Performance)."""

    first_trade_max_s: float
    rate_min_per_s: float
    rate_max_per_s: float
    latency_p95_max_ms: float
    seed_rate: str  # the source's wording of the rate range, e.g. "1-100/sec"
    source: str = ""  # where the numbers come from; empty: seed 000's "Expected Performance"


def _no_url_rules(urls: Sequence[str]) -> None:
    """An exchange without rules on how its URLs combine."""


def _no_record_rules(record: dict[str, Any]) -> list[str]:
    """An exchange without record rules beyond the v2 schema's."""
    return []


@dataclass(frozen=True)
class ExchangeDescriptor:
    """One exchange: names, defaults, symbol and URL rules, the connection plan, help texts, check data."""

    name: str  # the CLI word (`k2 stream NAME`), settings section (K2_NAME_URL, [name]), metrics prefix and label
    title: str  # for people: "Binance"
    code: str  # the record's `exchange` field, e.g. "BINANCE"
    default_topic: str
    default_url: str
    default_failover_urls: tuple[str, ...]
    default_symbols: tuple[str, ...]
    default_metrics_port: int
    # symbols: configured form -> subscription form (ConfigError naming K2_NAME_SYMBOLS for a bad one)
    check_symbols: Callable[[Sequence[str]], tuple[str, ...]]
    # subscription form -> the record's `symbol` (and the messages_received label)
    stored_symbol: Callable[[str], str]
    # (base URLs primary first, checked symbols) -> what the stream session does
    plan: Callable[[tuple[str, ...], tuple[str, ...]], ConnectionPlan]
    expectation: StreamExpectation
    simulator_module: str  # the module of its simulator protocol, imported only by the simulator
    symbols_help: str  # the --symbols help, e.g. "Comma-separated symbols, e.g. BTCUSDT,ETHUSDT"
    url_doc: str  # the url setting's line in docs/settings.md
    symbols_doc: str  # the symbols setting's line in docs/settings.md
    url_note: str = ""  # appended to the --url help, e.g. "; a /v2 path speaks WS v2"
    # raises ConfigError when the URLs cannot work together (e.g. two API versions)
    check_urls: Callable[[Sequence[str]], None] = _no_url_rules
    rehearsal_url_path: str = ""  # what the deploy rehearsal appends to its simulator's URL (an API version)
    vendor_fields: tuple[str, ...] = ()  # vendor_data keys every record of this exchange carries
    # the seeds' exchange-specific record rules beyond the v2 schema: one line per problem ([] = none)
    check_record: Callable[[dict[str, Any]], list[str]] = _no_record_rules
    rest: RestDialect | None = None  # its REST trade history (k2cli.exchanges.rest), None: no REST backfill
    default_rest_url: str = ""  # the REST API's base URL (setting K2_NAME_REST_URL)

    @property
    def metric_prefix(self) -> str:
        """The prefix of its stream metric families (`NAME_messages_received_total`)."""
        return self.name

    @property
    def scrape_job(self) -> str:
        """The Prometheus scrape job of its stream (deploy/prometheus/prometheus.yml.tmpl)."""
        return f"k2-stream-{self.name}"

    def alert(self, kind: str) -> str:
        """The name of one of its Prometheus alerts (deploy/prometheus/rules/k2-stream.yml), e.g. TitleMemoryHigh."""
        return f"{self.title}{kind}"

    @property
    def env_prefix(self) -> str:
        """The prefix of its environment variables, e.g. K2_NAME_ (K2_NAME_URL, K2_NAME_SYMBOLS)."""
        return f"K2_{self.name.upper()}_"

    def setting(self, key: str) -> str:
        """The environment variable of one of its settings (key: url, failover_urls, symbols, topic, ...)."""
        return f"{self.env_prefix}{key.upper()}"
