"""Red paths of the prereqs, e2e and resilience steps that measure a service: the fault is made for real (a
missing topic, a non-v2 subject or table, an unwritable directory, a busy consumer group, a table missing or
duplicating rows or a data file, a DLQ without the poison or with extra entries, a Prometheus with a broken k2
target, without the consumer's metrics or without the memory alerts) and the step's measure_* function must
turn red with the reason in its result."""

from __future__ import annotations

import dataclasses
import threading
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from k2cli import trade
from k2cli.checks.checklists import common, e2e, resilience
from k2cli.checks.context import Context
from k2cli.checks.model import Step
from k2cli.checks.probes import kafka
from k2cli.checks.probes.pipeline import make_trades
from k2cli.checks.runner import execute
from k2cli.kafka.registry import RegistryClient
from k2cli.lake.catalog import ensure_trades_table
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry
from k2cli.settings import Settings
from k2cli.verdict import Status
from tests.conftest import require
from tests.integration.redpath_prometheus import private_prometheus, rules_without
from tests.integration.validate_support import dead_port, delete_subject
from tests.unit.redpath_support import Consumed, assert_red

pytestmark = pytest.mark.integration


def settings_with_topic(tmp_path: Path, topic: str, **more) -> Settings:
    base = Settings(home=tmp_path / "home", **more)
    exchanges = {**base.exchanges, "binance": dataclasses.replace(base.exchanges["binance"], topic=topic)}
    return dataclasses.replace(base, exchanges=exchanges)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """One private Prometheus: a k2-consumer job whose endpoint exports none of the consumer's families, a k2
    job whose endpoint answers but not with Prometheus text, and k2's stream rules without binance's memory
    alerts. Yields (url, when it was ready)."""
    tmp = tmp_path_factory.mktemp("prometheus")
    rules = rules_without("binance_memory_health", tmp / "rules.yml")
    jobs = {"k2-consumer": "/metrics", "k2-stream-broken": "/-/ready"}  # Prometheus's own pages
    with private_prometheus(tmp, jobs, rules) as url:
        yield url, time.time()


def prometheus_ctx(tmp_path: Path, prometheus) -> Context:
    return Context(Settings(home=tmp_path / "home", prometheus_url=prometheus[0]))


# ---------------------------------------------------------------- prereqs (common steps)


@pytest.mark.parametrize(("measure", "setting", "field", "value"), [
    ("measure_broker", "K2_KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers", "127.0.0.1:{port}"),
    ("measure_registry", "K2_SCHEMA_REGISTRY_URL", "schema_registry_url", "http://127.0.0.1:{port}"),
    ("measure_catalog", "K2_ICEBERG_CATALOG_URI", "iceberg_catalog_uri",
     "postgresql+psycopg2://k2:k2@127.0.0.1:{port}/k2_catalog"),
    ("measure_prometheus", "K2_PROMETHEUS_URL", "prometheus_url", "http://127.0.0.1:{port}"),
])
def test_a_service_unreachable_fails_its_step(tmp_path, measure, setting, field, value):
    ctx = Context(Settings(home=tmp_path / "home", **{field: value.format(port=dead_port())}))
    step = Step("prereqs.service", "service", "the service answers", lambda c: getattr(common, measure)(c))
    result = execute(step, ctx, {})  # the runner turns the step's ServiceUnavailable into a FAIL
    ctx.close()
    assert_red(result, Status.FAIL, setting)


def test_a_missing_trade_topic_fails(tmp_path, unique):
    require("kafka")
    topic = f"test.redpath.missing.{unique}"
    assert_red(common.measure_topics(Context(settings_with_topic(tmp_path, topic))), Status.FAIL,
               f"topic {topic} does not exist", f"{topic}: missing")


def test_a_subject_without_the_v2_schema_fails(tmp_path, unique):
    require("schema-registry")
    topic = f"test.redpath.subject.{unique}"
    client = RegistryClient("http://localhost:8081")
    v1 = {"type": "record", "name": "Trade", "namespace": "k2.v1",
          "fields": [{"name": "symbol", "type": "string"}, {"name": "price", "type": "double"}]}
    try:
        client.register(f"{topic}-value", v1)
        result = common.measure_subjects(Context(settings_with_topic(tmp_path, topic)))
    finally:
        client.close()
        delete_subject(f"{topic}-value")
    assert_red(result, Status.FAIL, f"subject {topic}-value does not hold the v2 trade schema",
               "is not the v2 trade (missing ['message_id'")


def test_a_table_with_a_wrong_type_fails(tmp_path, unique):
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType

    name = f"redpath_{unique}.trades"
    ctx = Context(Settings(home=tmp_path / "home", table=name))
    catalog = common.open_catalog(ctx)  # the local SQLite catalog of this K2_HOME
    catalog.create_namespace(name.split(".")[0])
    catalog.create_table(name, schema=Schema(*(f.model_copy(update={"field_type": DoubleType()})
                                               if f.name == "price" else f for f in trade.iceberg_schema().fields)))
    assert_red(common.measure_table(ctx), Status.FAIL, f"{name} schema differs from v2: price: double, expected "
               "decimal(18, 8)")


def test_an_unwritable_dlq_directory_fails(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the DLQ directory should be")
    ctx = Context(Settings(home=tmp_path / "home", dlq_dir=blocker))
    assert_red(common.measure_writable(ctx), Status.FAIL, "K2_DLQ_DIR")


def test_a_broken_k2_scrape_target_fails(tmp_path, prometheus):
    ctx = prometheus_ctx(tmp_path, prometheus)
    assert_red(common.measure_scraping(ctx), Status.FAIL, "k2 target k2-stream-broken at",
               "answers but cannot be scraped")
    ctx.close()


# ---------------------------------------------------------------- e2e: the consumer group and the baseline


def test_a_consumer_active_in_the_group_fails_clean_state(tmp_path, unique):
    require("kafka")
    from confluent_kafka import Consumer

    topic, group = f"test.redpath.group.{unique}", f"test-redpath-{unique}"
    settings = Settings(home=tmp_path / "home", consumer_group=group, consumer_session_timeout=1.0)
    kafka.create_topic(settings, topic)
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": "localhost:9092", "group.id": group, "session.timeout.ms": 6000})
    consumer.subscribe([topic])

    def poll() -> None:
        while not stop.is_set():
            consumer.poll(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        deadline = time.monotonic() + 20
        while kafka.group_state(settings, group)[1] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        result = e2e.measure_clean_state(Context(settings))  # waits out the 1 s session timeout + 3 s first
    finally:
        stop.set()
        poller.join(5)
        consumer.close()
        kafka.delete_topic(settings, topic)
    assert_red(result, Status.FAIL, f"consumer group {group} has 1 active member(s)")


def test_a_baseline_without_the_topic_fails(tmp_path, unique):
    require("kafka")
    topic = f"test.redpath.baseline.{unique}"
    ctx = Context(settings_with_topic(tmp_path, topic))
    assert_red(e2e.measure_baseline(ctx), Status.FAIL, f"topic {topic} does not exist")
    assert "baseline" not in ctx.state


# ---------------------------------------------------------------- e2e: what the run wrote to the table


def lake_ctx(tmp_path: Path, unique: str, written: int, records: list[dict], *, batch_size: int = 500) -> Context:
    """A Context whose baseline is an empty table and whose run consumed `records` and reported `written`."""
    settings = Settings(home=tmp_path / "home", table=f"redpath_{unique}.trades", batch_size=batch_size)
    ctx = Context(settings)
    ensure_trades_table(common.open_catalog(ctx), settings.table)
    stats = {"messages_consumed": len(records), "messages_written": written, "dlq_entries": 0, "errors": 0,
             "sequence_gaps": 0, "duration_s": 2.0, "throughput_msg_per_sec": 500.0}
    ctx.state.update(baseline={"snapshots": set(), "records": 0}, plan={"need": 0, "total": len(records)},
                     consume={"stats": stats, "started": time.time(), "ended": time.time()},
                     consumed_records=[(Consumed(0, i), rec) for i, rec in enumerate(records)])
    return ctx


def append(ctx: Context, records: list[dict]) -> None:
    """One commit of these trades to the table (one snapshot)."""
    rows = [{**r, "price": Decimal(r["price"]), "quantity": Decimal(r["quantity"])} for r in records]
    common.load_table(ctx).append(pa.Table.from_pylist(rows, schema=trade.arrow_schema()))


def test_rows_missing_from_the_table_fail_records(tmp_path, unique):
    records = make_trades("BTCUSDT", range(1, 21))
    ctx = lake_ctx(tmp_path, unique, 20, records)
    append(ctx, records[:15])
    assert_red(e2e.measure_records(ctx), Status.FAIL, "total records grew by 15, the consumer wrote 20")


def test_duplicate_rows_in_place_of_consumed_ones_fail_records(tmp_path, unique):
    records = make_trades("BTCUSDT", range(1, 21))
    ctx = lake_ctx(tmp_path, unique, 20, records)
    append(ctx, records[:15] + records[:5])  # the count is right, but 5 trades are twice and 5 are missing
    assert_red(e2e.measure_records(ctx), Status.FAIL, "5 consumed messages are not in the new data files",
               f"message_id {records[15]['message_id']}")


def test_a_deleted_data_file_fails_records(tmp_path, unique):
    records = make_trades("BTCUSDT", range(1, 21))
    ctx = lake_ctx(tmp_path, unique, 20, records)
    append(ctx, records)
    [path] = [f.file.file_path for f in common.load_table(ctx).scan().plan_files()]
    Path(path.removeprefix("file://")).unlink()
    assert_red(e2e.measure_records(ctx), Status.FAIL, "cannot be read", Path(path).name)


def test_a_snapshot_over_the_batch_size_fails_snapshots(tmp_path, unique):
    records = make_trades("BTCUSDT", range(1, 21))
    ctx = lake_ctx(tmp_path, unique, 20, records, batch_size=10)
    append(ctx, records)  # 20 records in one commit: 1 snapshot where batches of 10 make at least 2
    assert_red(e2e.measure_snapshots(ctx), Status.FAIL, "a snapshot added 20 records, more than the batch size 10")


def test_low_throughput_or_a_slow_cold_start_fail(tmp_path, unique):
    records = make_trades("BTCUSDT", range(1, 21))
    ctx = lake_ctx(tmp_path, unique, 20, records)
    append(ctx, records)
    ctx.state["consume"]["stats"]["throughput_msg_per_sec"] = 40.0
    assert_red(e2e.measure_throughput(ctx), Status.FAIL, "throughput 40.0 msg/s")
    ctx.state["consume"]["stats"]["throughput_msg_per_sec"] = 500.0
    ctx.state["consume"]["started"] = time.time() - 300  # the first snapshot came 5 minutes after the start
    assert_red(e2e.measure_throughput(ctx), Status.FAIL, "cold start 299.")


# ---------------------------------------------------------------- e2e: the DLQ (real `k2 dlq` commands)


POISON = e2e.POISON_PREFIX + b"0123456789abcdef"


def dlq_ctx(tmp_path: Path, monkeypatch, entries: list[DLQEntry]) -> Context:
    dlq = tmp_path / "dlq"
    for key in ("K2_HOME", "K2_DLQ_DIR", "K2_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("K2_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("K2_DLQ_DIR", str(dlq))
    DeadLetterQueue(dlq, "consume").write(entries)
    ctx = Context(Settings(home=tmp_path / "home", dlq_dir=dlq))
    ctx.state.update(baseline={"dlq_ids": set()},
                     plan={"poison": {"partition": 2, "offset": 41, "value": POISON}, "need": 0})
    return ctx


def entry(offset: int, value: bytes) -> DLQEntry:
    topic = Settings().exchange_topic("binance")
    return DLQEntry(error="Confluent magic byte missing: value does not start with 0x00", error_type="no_magic_byte",
                    origin="consume", source={"topic": topic, "partition": 2, "offset": offset}, value=value)


def test_a_poison_record_absent_from_the_dlq_fails(tmp_path, monkeypatch):
    ctx = dlq_ctx(tmp_path, monkeypatch, [])
    assert_red(e2e.measure_poison(ctx), Status.FAIL, "partition 2 offset 41) is not in the DLQ")


def test_a_dlq_entry_without_the_original_bytes_fails(tmp_path, monkeypatch):
    ctx = dlq_ctx(tmp_path, monkeypatch, [entry(41, b"something else")])
    assert_red(e2e.measure_poison(ctx), Status.FAIL, "does not hold the original bytes",
               f"value: 14 bytes, sent {len(POISON)}")


def test_an_extra_dlq_entry_fails(tmp_path, monkeypatch):
    ctx = dlq_ctx(tmp_path, monkeypatch, [entry(41, POISON), entry(57, b"\x00\x00\x00\x00\x07 a trade")])
    assert e2e.measure_poison(ctx).status is Status.PASS
    assert_red(e2e.measure_dlq_clean(ctx), Status.FAIL, "1 records other than the poison were dead-lettered",
               "no_magic_byte")


# ---------------------------------------------------------------- e2e: Prometheus


def test_prometheus_without_the_consumer_families_fails_throughput_and_write_p99(tmp_path, prometheus):
    ctx = prometheus_ctx(tmp_path, prometheus)
    started = max(prometheus[1], time.time() - 5)
    time.sleep(max(0.0, started + 3.5 - time.time()))  # three scrapes of the consumer job inside the run's window
    ctx.state["consume"] = {"stats": {"throughput_msg_per_sec": 900.0}, "started": started, "ended": time.time()}
    throughput, p99 = e2e.measure_prom_throughput(ctx), e2e.measure_prom_write_p99(ctx)
    ctx.close()
    assert_red(throughput, Status.FAIL, "Prometheus has no rising k2_messages_consumed_total samples for the run")
    assert_red(p99, Status.FAIL, "Prometheus has no k2_iceberg_write_duration_seconds histogram for the run")


def test_scrapes_from_before_a_short_run_are_not_its_own(tmp_path, prometheus):
    # a run shorter than the 1 s scrape interval: the scrape before it (of whatever served the consumer's port then,
    # in CI the previous test's consumer) must not make two, and so a FAIL where a WARN is due
    ctx = prometheus_ctx(tmp_path, prometheus)
    time.sleep(max(0.0, prometheus[1] + 4 - time.time()))
    ended = time.time() - 1.5  # every scrape up to then is stored
    ctx.state["consume"] = {"stats": {"throughput_msg_per_sec": 900.0}, "started": ended - 0.4, "ended": ended}
    throughput, p99 = e2e.measure_prom_throughput(ctx), e2e.measure_prom_write_p99(ctx)
    ctx.close()
    assert_red(throughput, Status.WARN, "too few for a rate")
    assert_red(p99, Status.WARN, "too few for a p99")


def test_a_run_prometheus_never_scraped_warns(tmp_path, prometheus):
    ctx = prometheus_ctx(tmp_path, prometheus)
    ended = time.time() - 3600  # before this Prometheus started: no scrape of the run at all
    ctx.state["consume"] = {"stats": {"throughput_msg_per_sec": 900.0}, "started": ended - 10, "ended": ended}
    throughput, p99 = e2e.measure_prom_throughput(ctx), e2e.measure_prom_write_p99(ctx)
    ctx.close()
    assert_red(throughput, Status.WARN, "scraped the consumer 0 time(s) during its run, too few for a rate")
    assert_red(p99, Status.WARN, "scraped the consumer 0 time(s) during its run, too few for a p99")


# ---------------------------------------------------------------- resilience: the memory alerts


def test_memory_alert_rules_absent_fail(tmp_path, prometheus):
    ctx = prometheus_ctx(tmp_path, prometheus)
    result = resilience.measure_alert_memory(ctx)
    assert_red(result, Status.FAIL, "no loaded alert fires on process_memory_rss_bytes > 400 MB for binance",
               "no loaded alert fires on memory_leak_detection_score > 0.8 for binance")
    assert result.measured == 0
    ctx.options = dataclasses.replace(ctx.options, exchange="kraken")  # kraken's memory rules are loaded
    assert resilience.measure_alert_memory(ctx).status is Status.PASS
    ctx.close()
