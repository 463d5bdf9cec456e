"""`k2 validate` wall times: `validate list`, `validate prereqs` and `validate e2e` (medians of N runs).

Needs the local stack (`k2 stack up`). The e2e runs use their own topic, table and group (and the consumer
metrics port Prometheus scrapes, 9094), so they never touch the real pipeline's data.

    python benchmarks/validate_bench.py                  # 3 runs each, e2e over 5,000 messages
    python benchmarks/validate_bench.py --runs 1 --messages 3000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def timed(args: list[str], env: dict[str, str]) -> tuple[float, int, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "k2cli", *args], capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {}
    return took, proc.returncode, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--json", dest="json_path")
    opts = parser.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": os.environ.get("K2_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")})
    results: dict[str, dict] = {}
    for name in ("list", "prereqs", "e2e"):
        times, codes = [], []
        for _ in range(opts.runs):
            home = tempfile.mkdtemp(prefix="k2-validate-bench-")
            env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")} | {"K2_HOME": home}
            args = ["validate", name, "--format", "json"]
            topic = None
            if name == "e2e":
                suffix = uuid.uuid4().hex[:8]
                topic = f"bench.validate.{suffix}"
                admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
                config = Path(home) / "k2.toml"
                config.write_text(f"[thresholds]\ne2e_messages = {opts.messages}\n")
                env |= {"K2_BINANCE_TOPIC": topic, "K2_TABLE": f"bench_{suffix}.trades",
                        "K2_CONSUMER_GROUP": f"bench-validate-{suffix}", "K2_CONFIG": str(config)}
            took, code, report = timed(args, env)
            if topic:
                admin.delete_topics([topic])[topic].result(30)
            times.append(took)
            codes.append(code)
            print(f"k2 validate {name}: {took:.2f} s, exit {code}"
                  + (f", verdict {report.get('verdict')}" if report.get("verdict") else ""), flush=True)
        results[name] = {"runs": opts.runs, "median_s": statistics.median(times), "exit_codes": codes}
        print(f"== k2 validate {name}: median {statistics.median(times):.2f} s over {opts.runs} runs "
              f"(exit codes {codes})", flush=True)
    if opts.json_path:
        Path(opts.json_path).write_text(json.dumps({"messages": opts.messages, **results}, indent=2))


if __name__ == "__main__":
    main()
