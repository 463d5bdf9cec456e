"""The REST catalog on S3 that `k2 stack up --with rest-catalog,s3` runs: an env pointing k2 at it, or a failure."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

import pytest

from k2cli.stack.lake_services import client_settings
from tests.conftest import port_open, require


def rest_s3_env(k2_env: dict[str, str], table: str) -> dict[str, str]:
    """k2_env with the stack's REST catalog, its S3 store and a table of the test's own (fails when either is down)."""
    require("kafka", "schema-registry")
    remote = client_settings()
    for name, key in (("rest-catalog", "K2_ICEBERG_CATALOG_URI"), ("s3", "K2_S3_ENDPOINT")):
        url = urlparse(remote[key])
        if not port_open(url.hostname or "", url.port or 0):
            pytest.fail(f"{name} is not reachable at {url.netloc}; start it with `k2 stack up --with rest-catalog,s3`",
                        pytrace=False)
    return {**k2_env, **remote, "K2_TABLE": table}


def judge(rows: list[dict[str, Any]], produced: list[dict[str, Any]]) -> tuple[int, int, Decimal, Decimal]:
    """(rows, distinct message ids, sum of price, sum of quantity) of what the table holds minus what was produced:
    all zero when every record is there exactly once with exact decimals."""
    def totals(items: list[dict[str, Any]]) -> tuple[int, int, Decimal, Decimal]:
        return (len(items), len({r["message_id"] for r in items}), sum((Decimal(str(r["price"])) for r in items),
                Decimal(0)), sum((Decimal(str(r["quantity"])) for r in items), Decimal(0)))

    got, want = totals(rows), totals(produced)
    return got[0] - want[0], got[1] - want[1], got[2] - want[2], got[3] - want[3]
