"""What one soak sample costs the soak process itself, at the sample counts of real runs.

Per sample the runner appends to the profile (rewriting the file) and recomputes the leak score over the
samples after the warm-up; at the end it judges the run and renders the chart. This times those steps on
synthetic profiles of 1,440 samples (24 h at 60 s) and 10,080 samples (7 days at 60 s), and prints medians.

    python benchmarks/soak_bench.py [--runs 7] [--json FILE]
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from k2cli.soak import chart
from k2cli.soak.criteria import evaluate, leak_score_of, thresholds_from
from k2cli.soak.profile import COMPLETED, MB, ProfileWriter, RunRecord, Sample
from k2cli.soak.report import render_text


def synthetic(n: int, interval: float = 60.0) -> tuple[RunRecord, list[Sample]]:
    rng = random.Random(7)
    t = thresholds_from({})
    record = RunRecord(exchange="binance", url="wss://stream.binance.com:9443/stream", planned_duration_s=n * interval,
                       sample_interval_s=interval, warmup_s=300, thresholds=t, started_at=1.7e9, status=COMPLETED)
    samples, msgs = [], 0.0
    for k in range(1, n + 1):
        el = k * interval
        rss = int((70 + 8 * (1 - math.exp(-el / 300)) + rng.uniform(-0.3, 0.3)) * MB)
        rate = 40 + 10 * math.sin(el / 4000) + rng.uniform(-3, 3)
        msgs += rate * interval
        samples.append(Sample(timestamp=1.7e9 + el, elapsed_s=el, rss_bytes=rss, vms_bytes=3 * rss, rss_mb=rss / MB,
                              vms_mb=3 * rss / MB, messages=msgs, rate_msg_s=rate, reconnects={"idle_timeout": 0.0},
                              drops=0.0, rotations=float(k // 240), pings=float(k // 3), pong_timeouts=0.0,
                              integrity_errors=0.0, leak_score=0.01))
    return record, samples


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(runs: int = 7, json_path: str | None = None) -> None:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1440, 10080):
            record, samples = synthetic(n)
            ev = evaluate(record, samples)
            text = render_text(record, samples, ev)
            writer = ProfileWriter(Path(tmp), "b")
            for s in samples[:-1]:
                writer._lines.append(json.dumps(s.to_dict()))
            results[f"write_profile_{n}_ms"] = 1000 * timed(lambda w=writer, s=samples[-1]: (w.append(s),
                                                                                              w._lines.pop()), runs)
            results[f"leak_score_{n}_ms"] = 1000 * timed(lambda s=samples: leak_score_of(s[5:]), runs)
            results[f"evaluate_{n}_ms"] = 1000 * timed(lambda r=record, s=samples: evaluate(r, s), runs)
            results[f"render_html_{n}_ms"] = 1000 * timed(
                lambda r=record, s=samples, e=ev, x=text: chart.render_html(r, s, e, x), runs)
            results[f"svg_{n}_kib"] = len(chart.render_svg(record, samples, ev).encode()) / 1024
    per_sample = results["write_profile_1440_ms"] + results["leak_score_1440_ms"]
    results["per_sample_cost_at_1440_ms"] = per_sample
    print(f"soak bench (median of {runs} runs)")
    for key, value in results.items():
        print(f"  {key:<28} {value:10.2f}")
    print(f"  a 60 s interval spends {100 * per_sample / 60000:.3f}% of its time on the soak's own bookkeeping "
          "at 1,440 samples")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"runs": runs, **results}, fh, indent=2)


if __name__ == "__main__":
    argv = sys.argv[1:]
    json_file = None
    if "--json" in argv:
        i = argv.index("--json")
        json_file = argv[i + 1]
        del argv[i:i + 2]
    run_count = 7
    if "--runs" in argv:
        run_count = int(argv[argv.index("--runs") + 1])
    main(run_count, json_file)
