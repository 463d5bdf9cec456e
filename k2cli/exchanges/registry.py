"""The one place exchanges are registered: everything else asks here by name."""

from __future__ import annotations

from k2cli.errors import ConfigError
from k2cli.exchanges import binance, coinbase, kraken
from k2cli.exchanges.descriptor import ExchangeDescriptor

# one line per exchange; the first is the default of commands that take --exchange.
# (`all` below shadows the builtin inside this module only: callers say registry.all())
_ALL: tuple[ExchangeDescriptor, ...] = (
    binance.DESCRIPTOR,
    kraken.DESCRIPTOR,
    coinbase.DESCRIPTOR,
)
_BY_NAME = {d.name: d for d in _ALL}


def get(name: str) -> ExchangeDescriptor:
    """The descriptor of an exchange by name; an unknown name is a ConfigError naming the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown exchange {name!r} (known: {', '.join(names())})") from None


def names() -> tuple[str, ...]:
    """The registered exchanges' names, in registration order."""
    return tuple(_BY_NAME)


def all() -> tuple[ExchangeDescriptor, ...]:
    """Every registered exchange, in registration order."""
    return _ALL


def default() -> ExchangeDescriptor:
    """The exchange a command uses when none is given: the first registered, the one the operators' seed
    procedures (docs/seeds) were written for."""
    return _ALL[0]


def by_code(code: str) -> ExchangeDescriptor | None:
    """The exchange whose records carry this `exchange` code (BINANCE), or None."""
    return next((d for d in _ALL if d.code == code.upper()), None)


def names_text(template: str = "{}", mark_default: bool = False) -> str:
    """The names for a sentence, each put into `template`: "a or b", "a, b or c" ("a (default) or b")."""
    words = [template.format(name) + (" (default)" if mark_default and name == default().name else "")
             for name in names()]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
