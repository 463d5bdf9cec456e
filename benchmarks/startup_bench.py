"""`k2 --help` start-up time: median and p90 of N runs of the real command (python -m k2cli --help)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def main(runs: int = 21, json_path: str | None = None) -> None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "k2cli", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"k2 --help over {runs} runs: median {statistics.median(times) * 1000:.0f} ms, "
          f"p90 {times[int(0.9 * (runs - 1))] * 1000:.0f} ms, min {times[0] * 1000:.0f} ms")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"runs": runs, "median_s": statistics.median(times), "p90_s": times[int(0.9 * (runs - 1))],
                       "min_s": times[0]}, fh)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="?", type=int, default=21, help="how many runs (default 21)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    main(args.runs, args.json)
