"""Symbols: split Binance symbols with a real list of quote assets; normalise Kraken's legacy asset names."""

from __future__ import annotations

import re
from collections.abc import Sequence

from k2cli.errors import ConfigError

# Quote assets of Binance spot markets (stablecoins, majors, fiat). Matched longest first, so
# "BTCUSDT" is BTC/USDT and never BTCUSD/T; a symbol whose suffix is none of these is unknown.
BINANCE_QUOTE_ASSETS: tuple[str, ...] = (
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDP", "DAI", "AEUR", "EURI", "XUSD", "USD1",
    "BTC", "ETH", "BNB", "XRP", "DOGE", "DOT", "TRX", "SOL",
    "EUR", "TRY", "BRL", "GBP", "AUD", "JPY", "RUB", "UAH", "ZAR", "PLN", "RON", "ARS", "MXN",
    "COP", "IDR", "NGN", "CZK", "BIDR", "IDRT", "BVND", "VAI",
)
_QUOTES_LONGEST_FIRST = tuple(sorted(BINANCE_QUOTE_ASSETS, key=len, reverse=True))
_BINANCE_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")

# Kraken's legacy asset codes (REST "X"/"Z" forms and the WS v1 names) -> the common codes.
KRAKEN_LEGACY_ASSETS: dict[str, str] = {
    "XBT": "BTC", "XXBT": "BTC", "XBTC": "BTC",
    "XDG": "DOGE", "XXDG": "DOGE", "XDOGE": "DOGE",
    "XETH": "ETH", "XETC": "ETC", "XLTC": "LTC", "XXRP": "XRP", "XXLM": "XLM", "XXMR": "XMR",
    "XZEC": "ZEC", "XREP": "REP", "XMLN": "MLN",
    "ZUSD": "USD", "ZEUR": "EUR", "ZGBP": "GBP", "ZJPY": "JPY", "ZCAD": "CAD", "ZAUD": "AUD", "ZCHF": "CHF",
}
# The WS v1 names of assets whose common code differs (used to subscribe on v1).
KRAKEN_V1_NAMES: dict[str, str] = {"BTC": "XBT", "DOGE": "XDG"}
_KRAKEN_ASSET = re.compile(r"^[A-Z0-9.]{1,12}$")


class UnknownSymbol(ValueError):
    """A symbol k2 cannot split into base and quote."""


def split_binance_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) of a Binance symbol such as BTCUSDT; raises UnknownSymbol when no known quote fits."""
    if not _BINANCE_SYMBOL.match(symbol):
        raise UnknownSymbol(f"{symbol!r} is not a Binance symbol (letters and digits, e.g. BTCUSDT)")
    for quote in _QUOTES_LONGEST_FIRST:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise UnknownSymbol(f"{symbol!r} does not end in a known quote asset ({', '.join(BINANCE_QUOTE_ASSETS[:8])}, …)")


def check_binance_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    """Upper-case and check the configured Binance symbols at start-up; an unknown one is a ConfigError."""
    out = []
    for raw in symbols:
        symbol = raw.strip().upper()
        try:
            split_binance_symbol(symbol)
        except UnknownSymbol as exc:
            raise ConfigError(f"--symbols: {exc}", setting="K2_BINANCE_SYMBOLS") from None
        if symbol not in out:
            out.append(symbol)
    if not out:
        raise ConfigError("--symbols: no Binance symbol given", setting="K2_BINANCE_SYMBOLS")
    return tuple(out)


def normalise_kraken_asset(asset: str) -> str:
    """The common code of a Kraken asset (XBT -> BTC, XDG -> DOGE, ZUSD -> USD); others unchanged."""
    return KRAKEN_LEGACY_ASSETS.get(asset, asset)


def split_kraken_pair(pair: str) -> tuple[str, str]:
    """(base, quote), normalised, of a Kraken pair such as XBT/USD; raises UnknownSymbol if malformed."""
    base, sep, quote = pair.partition("/")
    if not sep or not _KRAKEN_ASSET.match(base) or not _KRAKEN_ASSET.match(quote):
        raise UnknownSymbol(f"{pair!r} is not a Kraken pair (BASE/QUOTE, e.g. BTC/USD)")
    return normalise_kraken_asset(base), normalise_kraken_asset(quote)


def kraken_symbol(pair: str) -> str:
    """The k2 symbol of a Kraken pair: normalised base and quote without separator (XBT/USD -> BTCUSD)."""
    base, quote = split_kraken_pair(pair)
    return base + quote


def kraken_v1_pair(pair: str) -> str:
    """The WS v1 name of a pair (BTC/USD -> XBT/USD, DOGE/USD -> XDG/USD)."""
    base, quote = split_kraken_pair(pair)
    return f"{KRAKEN_V1_NAMES.get(base, base)}/{KRAKEN_V1_NAMES.get(quote, quote)}"


def check_kraken_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    """Normalise the configured Kraken pairs to BASE/QUOTE common codes; a malformed one is a ConfigError."""
    out = []
    for raw in symbols:
        try:
            base, quote = split_kraken_pair(raw.strip().upper())
        except UnknownSymbol as exc:
            raise ConfigError(f"--symbols: {exc}", setting="K2_KRAKEN_SYMBOLS") from None
        pair = f"{base}/{quote}"
        if pair not in out:
            out.append(pair)
    if not out:
        raise ConfigError("--symbols: no Kraken pair given", setting="K2_KRAKEN_SYMBOLS")
    return tuple(out)
