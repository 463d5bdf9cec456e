"""Helpers shared by the command modules: JSON rendering."""

from __future__ import annotations

import json
import sys
from typing import Any

from k2cli.jsonutil import to_jsonable


def print_json(data: Any) -> None:
    """Print data as JSON on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2) + "\n")
