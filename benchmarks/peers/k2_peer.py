"""`k2 consume`, the real CLI process, configured by its own settings (K2_*)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lake import Lake
from procs import Tree

ROOT = Path(__file__).resolve().parents[2]


def starter(topic: str, lake: Lake, table: str, group: str, records: int, batch: int, work: Path):
    """start(first) for drive(): the first run stops after exactly `records`, a restart when caught up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({
        "K2_HOME": str(work / "home"), "K2_DATA_DIR": str(work / "data"), "K2_DLQ_DIR": str(work / "dlq"),
        "K2_ICEBERG_CATALOG_URI": lake.catalog_uri, "K2_ICEBERG_WAREHOUSE": lake.warehouse,
        "K2_CONSUMER_TOPICS": topic, "K2_CONSUMER_GROUP": group, "K2_BATCH_SIZE": str(batch),
        "K2_FLUSH_INTERVAL": "10", "K2_TABLE": table, "K2_CONSUMER_METRICS_PORT": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    })
    runs = [0]

    def start(first: bool) -> Tree:
        runs[0] += 1
        stop = ["--max-messages", str(records)] if first else ["--until-caught-up"]
        return Tree([sys.executable, "-m", "k2cli", "consume", *stop, "--format", "json"], env,
                    work / f"k2-consume-{runs[0]}.log", cwd=str(ROOT))

    return start
