"""`k2 validate prereqs`: every service the pipeline needs is up and shaped as k2 expects."""

from __future__ import annotations

from k2cli.checks.checklists import common
from k2cli.checks.context import Options
from k2cli.checks.model import Checklist, Step


def build(options: Options) -> Checklist:
    """The prerequisites checklist."""
    return Checklist(
        "prereqs",
        "Prerequisites: every service healthy",
        "Broker and trade topics, Schema Registry and trade subjects, Iceberg catalog and table, writable "
        "warehouse, Prometheus scraping k2, and k2's Python dependencies.",
        (
            common.broker_step("prereqs.broker"),
            Step("prereqs.topics", "Trade topics exist",
                 "Both trade topics exist with partitions.", common.measure_topics,
                 depends_on=("prereqs.broker",)),
            common.registry_step("prereqs.registry"),
            Step("prereqs.subjects", "Trade subjects hold the v2 schema",
                 "Each <topic>-value subject is either not registered yet or its latest version is the v2 trade.",
                 common.measure_subjects, depends_on=("prereqs.registry",)),
            common.catalog_step("prereqs.catalog"),
            Step("prereqs.table", "Trades table has the v2 schema",
                 "The trades table is either not created yet or has exactly the v2 schema.",
                 common.measure_table, depends_on=("prereqs.catalog",)),
            Step("prereqs.warehouse", "Warehouse and data directories writable",
                 "A probe file can be written to, read from and deleted in the warehouse; the data and DLQ "
                 "directories are writable.", common.measure_writable),
            common.prometheus_step("prereqs.prometheus"),
            Step("prereqs.prometheus-k2", "Prometheus scrapes k2",
                 "Prometheus's scrape loop works, it has k2 targets, and no k2 endpoint it reaches is broken.",
                 common.measure_scraping, depends_on=("prereqs.prometheus",)),
            Step("prereqs.dependencies", "Python dependencies installed",
                 "Every runtime dependency (psutil, certifi, confluent-kafka, ...) is installed at a version "
                 "k2's requirements accept.", common.measure_dependencies),
        ),
        source=f"{common.SEED_CONSUMER} (Prerequisites); {common.SEED_PHASE5} (Pre-Implementation Validation)",
    )
