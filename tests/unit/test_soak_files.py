"""Soak files: the profile is a JSON array the seeds' jq commands read; report and chart render from files."""

import json
import xml.etree.ElementTree as ET

import pytest

from k2cli.soak import chart
from k2cli.soak.criteria import evaluate, thresholds_from
from k2cli.soak.profile import (
    COMPLETED,
    CRASHED,
    MB,
    ConsumerSample,
    RunRecord,
    Sample,
    SoakFilesError,
    load,
    write_profile,
    write_run,
)
from k2cli.soak.report import rerender

T = thresholds_from({})


def make_run(tmp_path, n=30, status=COMPLETED, consumer=False, **kw):
    rec = RunRecord(exchange="kraken", url="ws://127.0.0.1:1/ws", planned_duration_s=n * 10.0, sample_interval_s=10.0,
                    warmup_s=30.0, thresholds=T, started_at=1.7e9, ended_at=1.7e9 + n * 10, status=status,
                    stream_command=["python", "-m", "k2cli", "stream", "kraken"], **kw)
    out = []
    for k in range(1, n + 1):
        rss = int((90 + (k % 3) * 0.1) * MB)
        c = ConsumerSample(rss_bytes=rss * 2, vms_bytes=rss * 3, rss_mb=2 * rss / MB, consumed=k * 200.0,
                           rate_msg_s=20.0, lag=3.0, dlq_entries=0) if consumer else None
        out.append(Sample(timestamp=1.7e9 + 10 * k, elapsed_s=10.0 * k, rss_bytes=rss, vms_bytes=3 * rss,
                          rss_mb=rss / MB, vms_mb=3 * rss / MB, messages=200.0 * k, rate_msg_s=20.0,
                          reconnects={"idle_timeout": 1.0 if k > 20 else 0.0}, drops=1.0 if k > 20 else 0.0,
                          rotations=1.0 if k > 12 else 0.0, pings=k, pong_timeouts=0, integrity_errors=0,
                          consumer=c))
    write_profile(tmp_path, "kraken", out)
    write_run(tmp_path, rec)
    return rec, out


def test_profile_is_a_top_level_array_with_the_seed_fields(tmp_path):
    make_run(tmp_path, n=12)
    data = json.loads((tmp_path / "kraken_soak_memory_profile.json").read_text())
    assert isinstance(data, list) and len(data) == 12
    assert {"timestamp", "rss_mb", "vms_mb", "messages", "rate_msg_s", "reconnects", "leak_score"} <= set(data[0])
    # the seed's `jq '[.[] | .rss_mb] | add / length'`
    assert sum(d["rss_mb"] for d in data) / len(data) == pytest.approx(90.1, abs=0.1)


def test_files_round_trip(tmp_path):
    rec, samples = make_run(tmp_path, consumer=True)
    rec2, samples2 = load(tmp_path)
    assert rec2 == rec and samples2 == samples


def test_rerender_writes_report_and_chart_from_the_files(tmp_path):
    make_run(tmp_path, status=CRASHED, end_reason="the stream process exited: killed by signal 9 (SIGKILL)",
             log_tail=["last line one", "Traceback: boom"], stream_exit=-9)
    record, ev, text = rerender(tmp_path)
    assert ev.exit_code == 2
    report = (tmp_path / "kraken_soak_test_report.txt").read_text()
    assert report == text and "PARTIAL: crashed" in report and "SIGKILL" in report and "Traceback: boom" in report
    svg = (tmp_path / "kraken_soak_chart.svg").read_text()
    ET.fromstring(svg)  # well-formed XML
    assert "FAIL (exit 2)" in svg and "rotation" in svg and "drop" in svg
    assert "<svg" in (tmp_path / "kraken_soak_chart.html").read_text()


def test_chart_has_both_panels_and_a_line_per_process(tmp_path):
    rec, samples = make_run(tmp_path, consumer=True)
    svg = chart.render_svg(rec, samples, evaluate(rec, samples))
    root = ET.fromstring(svg)
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "Memory (RSS)" in texts and "Message rate" in texts and "consumer RSS" in texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) == 4


def test_missing_values_break_the_line_instead_of_dropping_to_zero(tmp_path):
    rec, samples = make_run(tmp_path, n=10)
    samples[5].rate_msg_s = None
    svg = chart.render_svg(rec, samples, evaluate(rec, samples))
    assert svg.count("<polyline") == 3  # RSS, and the rate line in two pieces


def test_not_a_soak_directory_is_a_clear_error(tmp_path):
    with pytest.raises(SoakFilesError, match="not a soak output directory"):
        load(tmp_path)


@pytest.mark.parametrize(("span", "step"), [(180, 30), (3600, 600), (86400, 10800), (7 * 86400, 86400)])
def test_time_axis_steps_read_well(span, step):
    assert chart._time_step(span) == step


@pytest.mark.parametrize(("seconds", "text"), [(45, "45s"), (180, "3m"), (5400, "1h30m"), (86400, "1d")])
def test_elapsed_labels(seconds, text):
    assert chart.fmt_elapsed(seconds) == text
