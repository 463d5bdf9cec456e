"""The reference of every setting, rendered into docs/settings.md (a test keeps the two in step)."""

from __future__ import annotations

import dataclasses

from k2cli.exchanges import registry
from k2cli.exchanges.descriptor import ExchangeDescriptor
from k2cli.settings import Settings, env_name, exchange_defaults, exchange_keys

HELP: dict[str, str] = {
    "home": "k2's own directory: stack state, cache, logs (default `~/.k2`).",
    "kafka_bootstrap_servers": "Kafka brokers, `host:port[,host:port]`.",
    "kafka_security_protocol": "How k2 connects to Kafka: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` "
                               "(the stack's SASL_SSL listener: `k2 stack status`).",
    "kafka_sasl_mechanism": "SASL mechanism, required with `SASL_*`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or "
                            "`OAUTHBEARER` (its `sasl.oauthbearer.*` properties in k2.toml's `[kafka]` table).",
    "kafka_sasl_username": "SASL user name (PLAIN, SCRAM).",
    "kafka_sasl_password": "SASL password (PLAIN, SCRAM); a secret.",
    "kafka_ssl_ca_location": "CA bundle (PEM) that signs the brokers' certificates; empty: the system's CA store.",
    "kafka_ssl_certificate_location": "Client certificate (PEM) for brokers that require one (mTLS).",
    "kafka_ssl_key_location": "The client certificate's private key (PEM).",
    "kafka_ssl_key_password": "Passphrase of an encrypted client key; a secret.",
    "kafka_properties": "librdkafka properties passed through to every Kafka client: k2.toml's `[kafka]` table "
                        "(keys with dots, quoted: `\"client.id\" = \"k2-prod\"`; keys with underscores are k2 "
                        "settings, e.g. `bootstrap_servers`), or `name=value,...` in the environment, added to the "
                        "table. They override k2's own client defaults; the `K2_KAFKA_*` settings override them; "
                        "a property a setting or k2 itself controls (`security.protocol`, `sasl.*`, `group.id`, "
                        "`enable.auto.commit`, `enable.idempotence`, `acks`, `isolation.level`, ...) is refused.",
    "schema_registry_url": "Schema Registry speaking the Confluent REST API; `https://user:pass@host/` user-info is "
                           "sent as basic auth and never printed.",
    "schema_registry_basic_auth": "Basic-auth credential `user:password` for the Schema Registry (wins over the "
                                  "URL's user-info); a secret.",
    "schema_registry_bearer_token": "Bearer token for the Schema Registry (sent instead of basic auth); a secret.",
    "schema_registry_ca_location": "CA bundle (PEM) an `https://` Schema Registry's certificate is verified with "
                                   "(default: certifi's).",
    "iceberg_catalog_uri": "Catalog: `sqlite:///…` or `postgresql+psycopg2://…` (SQL), `http(s)://…` (Iceberg REST); "
                           "empty: SQLite in the data dir.",
    "iceberg_warehouse": "Warehouse location: `file://…` or `s3://…`; empty: `warehouse/` in the data dir.",
    "iceberg_catalog_credential": "REST catalog OAuth2 client credential `client_id:client_secret` (secret).",
    "iceberg_catalog_token": "REST catalog bearer token (secret).",
    "iceberg_catalog_scope": "REST catalog OAuth2 scope; empty: pyiceberg's default.",
    "data_dir": "Where the embedded catalog, warehouse and DLQ live; empty: `$K2_HOME/data`.",
    "dlq_dir": "Dead-letter queue directory (JSONL files, rotated at 100 MB); empty: `<data dir>/dlq`.",
    "prometheus_url": "Prometheus used by `k2 validate` and `k2 soak report --prometheus`.",
    "postgres_uri": "The stack's PostgreSQL catalog URI (for `K2_ICEBERG_CATALOG_URI` when you want it).",
    "s3_endpoint": "S3 endpoint for an `s3://` warehouse (e.g. MinIO `http://minio:9000`).",
    "s3_access_key": "S3 access key.",
    "s3_secret_key": "S3 secret key.",
    "s3_region": "S3 region.",
    "s3_path_style": "Path-style S3 requests (`http://host/bucket/key`), as most S3-compatible servers want.",
    "exchanges": "Per exchange, one row for each of its settings (`k2cli/exchanges/registry.py`).",
    "ping_interval": "Seconds between our WebSocket pings (heartbeat).",
    "pong_timeout": "Seconds a pong may take before the connection is replaced.",
    "idle_timeout": "Seconds without any frame before the connection is replaced (idle watchdog).",
    "rotation_interval": "Seconds between planned make-before-break connection rotations (4 h).",
    "ssl_verify": "Verify TLS certificates (certifi plus `K2_CA_BUNDLE`); false prints a warning.",
    "ca_bundle": "Extra CA bundle (PEM) trusted besides certifi's.",
    "backoff_initial": "First reconnect delay in seconds (doubles, with jitter).",
    "backoff_max": "Cap of the reconnect delay in seconds.",
    "max_reconnects": "Consecutive failed reconnects before giving up; 0 = never give up.",
    "serializer_cache_max_size": "Bound of the LRU cache of Avro serializers (one per subject).",
    "producer_buffer_max_messages": "Messages the producer buffers while Kafka is slow or down (back-pressure).",
    "consumer_group": "Consumer group of `k2 consume`.",
    "consumer_topics": "Comma-separated topics `k2 consume` reads by default.",
    "consumer_metrics_port": "Metrics port of `k2 consume` (0 = off).",
    "batch_size": "Records per Iceberg commit.",
    "flush_interval": "Seconds after which a partial batch is written.",
    "table": "Iceberg table, `namespace.table`.",
    "snapshots_to_keep": "Snapshots kept by expiry (the newest always carries every partition's offsets).",
    "gap_large_threshold": "Missing sequence numbers above which a gap is LARGE_GAP.",
    "thresholds": "Validation and soak thresholds (`[thresholds]` table in k2.toml; in the environment "
                  "`name=value,...`, added to the table; `k2 validate list` shows them).",
    "config_file": "The k2.toml in force (set with `--config` or `K2_CONFIG`).",
    "stream_flush_timeout": ("Seconds `k2 stream` waits for Kafka to take buffered records at shutdown; what it has "
                             "not acknowledged by then goes to the dead-letter queue, replayable."),
    "backfill": "`k2 stream` fills gaps in trade ids (reconnects, stalls, restarts) from the exchange's REST API "
                "(feeds without ids: the time window of each connection break or restart); "
                "false: gaps are only counted (flag `--backfill/--no-backfill`).",
    "backfill_max_trades": "A gap spanning more trade ids than this is reported unfilled (with the `k2 backfill` "
                           "command that fills it) instead of fetched; a time window (feeds without ids) is "
                           "fetched until it holds more trades than this, the rest reported unfilled.",
    "memory_sample_interval": "Seconds between RSS samples of the leak score (window: 120 samples).",
    "debug_leak_mb_per_min": "Test-only fault: `k2 stream` retains this many MiB per minute (for soak tests).",
    "consumer_instance_id": "Static group member id; empty: `<group>-<host>-<free slot>`.",
    "consumer_session_timeout": "Seconds before a dead consumer's partitions move to another member.",
    "snapshot_expire_step": "A consumer expires old snapshots once per this many of its commits.",
    "sequence_reset_quiet_seconds": "A sequence far below the last one after this much quiet is a RESET.",
    "breaker_failure_threshold": "Consecutive failed Iceberg writes that open the circuit breaker.",
    "breaker_reset_timeout": "Seconds the breaker stays open before a trial write (doubles, max 30).",
    "consumer_decode_workers": "Decode processes; -1: 2 for batches of 5,000+ on 2+ cores, else 0.",
    "consumer_startup_timeout": "Seconds `k2 consume` retries an unreachable broker, registry or catalog at start.",
    "consumer_dedup": "`k2 consume` writes each (exchange, symbol, trade_id) once; false (benchmarks only) writes "
                      "every record and leaves the table's trade-id state as it is.",
    "consumer_decoder": "`k2 consume`'s decoder: auto (the compiled one when built, else fastavro), native or python.",
}


def _exchange_help(d: ExchangeDescriptor, key: str) -> str:
    """The meaning of one per-exchange setting."""
    return {
        "url": d.url_doc,
        "failover_urls": f"Comma-separated {d.title} failover URLs, tried in turn after the primary fails.",
        "symbols": d.symbols_doc,
        "topic": f"Kafka topic of {d.title} trades.",
        "metrics_port": f"Metrics port of `k2 stream {d.name}` (0 = off).",
        "rest_url": f"{d.title} REST API base URL; gaps are backfilled from its trade history.",
        "rest_api_key": f"Optional {d.title} API key sent with REST backfill calls (public data needs none).",
    }[key]


def _exchange_rows() -> list[str]:
    """One row per setting of every registered exchange, with the descriptor's defaults."""
    rows = []
    for d in registry.all():
        defaults = exchange_defaults(d)
        for key in exchange_keys(d):
            name = f"{d.name}_{key}"
            value = _text(getattr(defaults, key)) if getattr(defaults, key) != "" else "(none)"
            rows.append(f"| `{env_name(name)}` | `{name}` | `{value}` | {_exchange_help(d, key)} |")
    return rows


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "(none)"
    text = str(value)
    return text if text not in ("", ".") else "(derived)"


def _default(field: dataclasses.Field[object]) -> str:
    if field.name == "home":
        return "~/.k2"
    value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    if value is dataclasses.MISSING or isinstance(value, dict):
        return "(none)"
    return _text(value)


def render() -> str:
    """docs/settings.md: every setting with its variable, default and meaning."""
    lines = [
        "# Settings",
        "",
        "Generated from `k2cli/settings_doc.py` by `python scripts/gen_settings_doc.py`; a test fails when it drifts.",
        "",
        "Precedence: defaults < `k2.toml` (or `--config FILE` / `K2_CONFIG`) < `K2_*` environment < flags.",
        "In k2.toml write `name = value`, or `[section] key = value` for `section_key` (e.g. `[kafka]",
        "bootstrap_servers = …`, or an exchange's `[<exchange>] url = …`). Every error about a bad value names",
        "the variable. `k2 config show` prints every setting in force and where it came from.",
        "",
        "Secrets are never shown: a setting whose name holds `password`, `secret`, `token`, `credential` or",
        "`basic_auth`, or ends in `_key` (a `_location` path is not a secret), and the password of any URL, are",
        "printed as `***` in errors, logs, reports and outputs (`k2cli/redaction.py`).",
        "",
        "| variable | k2.toml key | default | meaning |",
        "|---|---|---|---|",
    ]
    for field in dataclasses.fields(Settings):
        if field.name == "exchanges":
            lines += _exchange_rows()
            continue
        variable = "K2_CONFIG" if field.name == "config_file" else env_name(field.name)
        lines.append(f"| `{variable}` | `{field.name}` | `{_default(field)}` | {HELP[field.name]} |")
    return "\n".join(lines) + "\n"
