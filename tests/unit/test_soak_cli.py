"""The soak command's live display and its JSON summary render from plain runner events."""

from pathlib import Path

from rich.console import Console

from k2cli.cli import soak as cli
from k2cli.soak.criteria import evaluate, thresholds_from
from k2cli.soak.profile import COMPLETED, MB, ConsumerSample, RunRecord, Sample
from k2cli.soak.runner import SoakEvent, SoakPlan

T = thresholds_from({})


def render(view) -> str:
    console = Console(record=True, width=120, force_terminal=False)
    console.print(view)
    return console.export_text()


def test_live_view_shows_progress_eta_rss_rate_and_drops(tmp_path):
    plan = SoakPlan(exchange="binance", url="ws://127.0.0.1:1/stream", duration_s=3600, sample_interval_s=60,
                    output_dir=tmp_path, consumer=True)
    record = RunRecord(exchange="binance", url=plan.url, planned_duration_s=3600, sample_interval_s=60, warmup_s=300,
                       thresholds=T)
    view = cli._LiveView(plan)
    assert "waiting for the children" in render(view)
    view.update(SoakEvent("ready", plan, record))
    c = ConsumerSample(rss_bytes=150 * MB, vms_bytes=400 * MB, rss_mb=150.0, rate_msg_s=41.5, lag=12)
    s = Sample(timestamp=0, elapsed_s=60, rss_bytes=80 * MB, vms_bytes=300 * MB, rss_mb=80.0, vms_mb=300.0,
               messages=2500, rate_msg_s=41.7, drops=1, rotations=0, pings=20, pong_timeouts=0, leak_score=None,
               consumer=c)
    view.update(SoakEvent("sample", plan, record, s, 1))
    text = render(view)
    for part in ("1 of 60", "ETA", "80.0 MB", "41.7 msg/s", "2,500 messages", "drops", "1  (rotations 0",
                 "needs 10 samples", "consumer", "RSS 150.0 MB", "lag 12", "Ctrl-C"):
        assert part in text, part


def test_json_summary_names_the_files_and_every_criterion(tmp_path):
    record = RunRecord(exchange="kraken", url="ws://x", planned_duration_s=60, sample_interval_s=10, warmup_s=30,
                       thresholds=T, status=COMPLETED)
    samples = [Sample(timestamp=t, elapsed_s=t, rss_bytes=70 * MB, vms_bytes=70 * MB, rss_mb=70, vms_mb=70,
                      messages=20.0 * t, rate_msg_s=20, drops=0, integrity_errors=0) for t in range(10, 61, 10)]
    summary = cli._summary(record, evaluate(record, samples), Path("/out"))
    assert summary["verdict"] in ("PASS", "WARN") and summary["exit_code"] in (0, 1)
    assert summary["files"]["profile"] == "/out/kraken_soak_memory_profile.json"
    assert {c["name"] for c in summary["criteria"]} >= {"message rate", "connection drops", "stream leak score"}
