"""k2: a command-line toolkit for a crypto market-data pipeline."""

__version__ = "0.1.0"
