"""The venue interface: what the simulator's core asks of an exchange's module (see the package docstring)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from k2cli.simulator.config import SimulatorConfig
    from k2cli.simulator.history import TradeHistory
    from k2cli.simulator.tape import Event, TapeTrade

OptionValue = int | float | str | bool


@dataclass(frozen=True)
class VenueOption:
    """A command-line option only this venue has; its value reaches the venue as `cfg.options[name]`."""

    name: str  # the key in SimulatorConfig.options (and the command's parameter name)
    flag: str  # "--kraken-version"
    default: OptionValue  # its type is the option's type
    help: str


class Link(Protocol):
    """What a dialect may do with its connection (the core's connection implements it)."""

    @property
    def conn_id(self) -> int:
        """A number that tells this connection apart (for greetings that carry a connection id)."""
        ...

    @property
    def served(self) -> tuple[str, ...]:
        """The symbols the simulator serves, normalised by the venue."""
        ...

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The symbols this connection receives (the route's, then each subscribe()'s), in that order."""
        ...

    async def send(self, texts: list[str]) -> None:
        """Send text frames, in order, in one write."""
        ...

    def anchor(self) -> int:
        """Fix where this connection joins the market (the market's head now, the first time) and return it."""
        ...

    def subscribe(self, symbol: str) -> None:
        """Deliver this symbol's events from now on."""
        ...

    def recent_trades(self, symbol: str, before: int) -> list[TapeTrade]:
        """The symbol's last trades (whole events) before market index `before`; none on a file tape."""
        ...

    def start(self) -> None:
        """Start the market clock (if it is not running) and the delivery of events from the anchor on."""
        ...


class Dialect(ABC):
    """One wire protocol of a venue, served on the request paths its venue routes to it.

    Dialects are stateless singletons: per-connection state lives in the core and is read through the Link
    (subscriptions, anchor). Frames are cached per event under `key`, the dialect class's qualified name.
    """

    key: str  # set for each subclass: "k2cli.simulator.venues.<venue>.<Class>"
    heartbeat: str | None = None  # frame sent after heartbeat_interval without any frame; None = no heartbeats

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.key = f"{cls.__module__}.{cls.__qualname__}"

    def __init__(self) -> None:
        self.key = type(self).key  # an instance attribute reads faster on the hot path than the class's

    @abstractmethod
    def render(self, event: Event) -> str:
        """The data frame's text for a tape event (one symbol, 1..3 trades): the hot path, keep it lean."""

    @abstractmethod
    def garbage(self, n: int) -> str:
        """The n-th bad frame (--garbage-every): n % 4 picks invalid JSON, a missing field, an unknown event, a
        zero price."""

    def shutdown_frame(self, ms: int) -> str:
        """The shutdown notice sent by the --shutdown-every fault (`ms`: epoch milliseconds); only dialects of a
        venue with `shutdown_notice` are asked."""
        raise NotImplementedError(f"{type(self).__name__} has no shutdown notice")

    async def open(self, link: Link) -> None:
        """The connection is open: greet, or start delivering (the default: no subscribe handshake)."""
        link.start()

    async def on_message(self, link: Link, msg: dict[str, Any]) -> None:
        """A JSON object from the client (pings, subscribe requests); other frames are ignored by the core."""
        return None  # the default dialect answers nothing


class Route(NamedTuple):
    """How a request path is served: by which dialect, with which symbols subscribed from the path itself."""

    dialect: Dialect
    symbols: tuple[str, ...] = ()


class RestAnswer(NamedTuple):
    """One HTTP answer of a venue's REST API: status, JSON body, extra headers."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


class RestApi(ABC):
    """A venue's public trade-history endpoint, over the market's history. One instance per simulator (it may
    keep state, such as a used-weight counter); the core applies the rate limit, bans and faults."""

    ban_status: int | None = None  # answer to a client that goes on within a rate-limit answer's Retry-After

    @abstractmethod
    def answer(self, path: str, query: Mapping[str, str], history: TradeHistory) -> RestAnswer | None:
        """The answer to GET path?query (first value of each parameter); None: not a path of this API (404)."""

    @abstractmethod
    def error(self, status: int, message: str) -> RestAnswer:
        """An error answer in the venue's shape (400 bad request, 404, 429 rate limit, 418 ban, 5xx)."""

    def finish(self, answer: RestAnswer, now: float) -> RestAnswer:
        """Headers every answer carries (the default: none); `now` is epoch seconds."""
        return answer


class Venue(ABC):
    """A simulated exchange: its symbols, request paths, dialects, options and faults it supports."""

    name: str  # its exchange's registry name: the command (`k2 simulate NAME`) and SimulatorConfig.exchange
    summary: str  # what is served where, for the command's help ("WS v1 at /, v2 at /v2")
    url_path: str = ""  # path of the URL printed once listening
    multi_trade_events: bool = False  # frames carry 1..3 trades of one symbol (else one trade)
    shutdown_notice: str | None = None  # name of its shutdown notice; None: --shutdown-every is refused
    options: tuple[VenueOption, ...] = ()

    @property
    def title(self) -> str:
        """Its exchange's name for people ("Binance"), from the exchange's descriptor."""
        from k2cli.exchanges import registry

        return registry.get(self.name).title

    @abstractmethod
    def normalise_symbol(self, raw: str) -> str:
        """A symbol as the venue writes it; ValueError (with one line for the operator) when it cannot be."""

    def check(self, cfg: SimulatorConfig) -> None:
        """Reject impossible values of this venue's options with a ConfigError (one line)."""
        return None  # a venue without options has nothing to check

    @abstractmethod
    def route(self, path: str, cfg: SimulatorConfig) -> Route | None:
        """The route of a request path (with its query), or None to refuse it (HTTP 400)."""

    def rest_api(self, cfg: SimulatorConfig) -> RestApi | None:
        """A new instance of the venue's REST trade history API for a config, or None when it has none."""
        return None


def option(options: Mapping[str, OptionValue], spec: VenueOption) -> OptionValue:
    """The value of a venue option in a config, else its default."""
    return options.get(spec.name, spec.default)
