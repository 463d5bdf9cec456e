"""librdkafka's lines through k2's logger: warnings and worse, a repeating condition shown once per interval."""

from __future__ import annotations

import logging

from k2cli.kafka.rdlog import CollapseRepeats, logger


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("k2.kafka.librdkafka", logging.ERROR, __file__, 1, "%s", (text,), None)


def test_a_repeating_line_passes_once_per_interval_with_the_count_held_back():
    now = [0.0]
    collapse = CollapseRepeats(every_s=30, clock=lambda: now[0])
    refused = "localhost:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after {}ms)"
    shown = []
    for i in range(630):
        now[0] = i * 0.05  # ~630 lines over 32 s, as a broker refusing connections produces them
        record = _record(refused.format(i % 9))
        if collapse.filter(record):
            shown.append(record.getMessage())
    assert len(shown) == 2
    assert shown[0] == refused.format(0)
    assert shown[1].endswith("(repeated 599 times in the last 30s)")


def test_different_conditions_are_each_shown():
    collapse = CollapseRepeats(clock=lambda: 0.0)
    assert collapse.filter(_record("1/1 brokers are down"))
    assert collapse.filter(_record("Connection refused"))
    assert not collapse.filter(_record("2/2 brokers are down"))


def test_the_logger_passes_warnings_and_worse_only():
    log = logger()
    assert log.name == "k2.kafka.librdkafka" and log.level == logging.WARNING
    assert logger() is log and sum(isinstance(f, CollapseRepeats) for f in log.filters) == 1
