"""Outside the exchange modules no code names an exchange: everything else asks k2cli.exchanges.registry."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "k2cli"
WORDS = re.compile(r"binance|kraken|coinbase", re.IGNORECASE)
EXEMPT_DIRS = ("exchanges/", "simulator/venues/")  # the exchange modules, and the simulator's per-exchange protocols


def _scanned() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not p.relative_to(PACKAGE).as_posix().startswith(EXEMPT_DIRS)]


def test_no_exchange_is_named_outside_the_exchange_modules():
    found = [f"k2cli/{path.relative_to(PACKAGE).as_posix()}:{number}: {line.strip()}"
             for path in _scanned()
             for number, line in enumerate(path.read_text().splitlines(), start=1) if WORDS.search(line)]
    assert not found, "exchange named outside k2cli/exchanges (ask the registry):\n" + "\n".join(found)


def test_the_scan_covers_the_package():
    scanned = {p.relative_to(PACKAGE).as_posix() for p in _scanned()}
    assert {"settings.py", "stream/runner.py", "cli/stream.py", "checks/thresholds.py", "cli/simulate.py",
            "simulator/server.py", "simulator/connection.py"} <= scanned
    assert not any(name.startswith(EXEMPT_DIRS) for name in scanned)
