"""`k2 --help` start-up time: median and p90 of N runs of the real command (python -m k2cli --help)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def main(runs: int = 21) -> None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "k2cli", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"k2 --help over {runs} runs: median {statistics.median(times) * 1000:.0f} ms, "
          f"p90 {times[int(0.9 * (runs - 1))] * 1000:.0f} ms, min {times[0] * 1000:.0f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
