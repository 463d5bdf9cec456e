"""Scale-out: three `k2 consume` processes in one group write one table through the REST catalog on S3 while trades
keep arriving; one is SIGKILLed mid-run and the third joins late. Judged against what was produced (count, distinct
ids, decimal sums), not against k2's own counters."""

from __future__ import annotations

import pytest

from tests.faults.support import Feeder, consume, end_offsets, wait_caught_up, wait_until, with_env, written
from tests.integration.consume_support import free_port, make_trade, scratch_topic, table_rows
from tests.integration.rest_s3_support import judge, rest_s3_env

pytestmark = pytest.mark.integration
SHOWN = ("messages_written", "snapshots_committed", "commit_conflicts")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")  # the Feeder's: record i is make_trade(i, SYMBOLS[i % 3])


def test_three_consumers_one_killed_one_late_write_every_record_once(tmp_path, k2_env, unique):
    env = with_env(rest_s3_env(k2_env, f"scale_{unique}.trades_v2"), consumer_session_timeout=6)
    group = f"k2-scale-{unique}"
    procs = []
    with scratch_topic("test.scale-out", unique, partitions=6) as topic:
        args = ("--topics", topic, "--group", group, "--batch-size", "500", "--flush-interval", "2")
        feeder = Feeder(topic, rate=600, partitions=6)
        try:
            feeder.produce(1500)
            ports = [free_port() for _ in range(3)]
            a, b = (consume(env, tmp_path / "logs", *args, "--instance-id", f"{group}-{n}", metrics_port=p)
                    for n, p in zip("ab", ports, strict=False))
            procs += [a, b]
            feeder.start()
            wait_until(lambda: (written(ports[0]) or 0) > 0 and (written(ports[1]) or 0) > 0, 90, "A and B writing")
            a.kill()  # kill -9: its partitions move to B after the session timeout, its open batch is re-read
            c = consume(env, tmp_path / "logs", *args, "--instance-id", f"{group}-c", metrics_port=ports[2])
            procs.append(c)
            wait_until(lambda: (written(ports[2]) or 0) > 0, 90, "C (late) writing")
            feeder.stop()
            wait_caught_up(env, env["K2_TABLE"], end_offsets(topic), 120, "B and C to write the whole topic")
            codes = [p.stop(60) for p in (b, c)]
            summaries = [p.summary() for p in (b, c)]
        finally:
            feeder.stop()
            for p in procs:
                if p.alive():
                    p.kill()
    assert codes == [0, 0], [p.stderr()[-1500:] for p in (b, c)]
    assert all(s.get("unwritten_records") == 0 for s in summaries), summaries
    produced = [make_trade(i, symbol=SYMBOLS[i % 3]) for i in range(feeder.next)]
    print(f"scale-out: {len(produced)} produced; B and C: {[{k: s.get(k) for k in SHOWN} for s in summaries]}")
    assert judge(table_rows(env, env["K2_TABLE"]), produced) == (0, 0, 0, 0)
