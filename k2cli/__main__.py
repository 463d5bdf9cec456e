"""Allow `python -m k2cli`."""

from k2cli.cli.app import main

main()
