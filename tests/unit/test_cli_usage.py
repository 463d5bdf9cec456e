"""One CLI vocabulary: every usage error exits 2 with one `k2: error:` line, whatever the command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from k2cli.cli.app import app
from k2cli.cli.completion import command_tree
from k2cli.cli.options import GROUP, Format, FormatChoice, setting_help
from k2cli.settings import Settings

FORMAT_COMMANDS = sorted(path for path, entry in command_tree().items() if "--format" in entry["options"])


def _k2(*args: str):
    return CliRunner().invoke(app, list(args))


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("k2: error: "), (
        result.exit_code, result.stderr, result.stdout)
    return lines[0]


def test_every_data_and_report_command_has_the_format_option():
    assert len(FORMAT_COMMANDS) >= 20
    assert ("query", "trades") in FORMAT_COMMANDS and ("validate", "prereqs") in FORMAT_COMMANDS


@pytest.mark.parametrize("path", FORMAT_COMMANDS, ids=" ".join)
def test_a_bad_format_value_is_one_line_and_exit_2(path):
    line = _one_error_line(_k2(*path, "--format", "yaml"))
    assert "'--format'" in line and "'yaml' is not one of" in line


@pytest.mark.parametrize("args", [
    ("query", "trades", "--bogus"),
    ("query", "trades", "--limit", "0"),
    ("query", "ohlcv"),  # --symbol missing
    ("validate", "deploy"),
    ("validate", "deploy", "--pre", "--rehearse", "1"),
    ("validate", "prereqs", "--exchange", "nyse"),
    ("soak", "--hours", "1", "--minutes", "1", "--exchange", "binance"),
    ("soak", "report", "--format", "markdown", "somewhere"),
    ("consume", "--topics", ","),
    ("nosuch",),
])
def test_usage_errors_are_one_line_and_exit_2(args):
    _one_error_line(_k2(*args))


def test_formats_are_case_insensitive_and_each_command_takes_its_subset():
    rich_json = FormatChoice((Format.rich, Format.json))
    assert rich_json.convert("JSON", None, None) is Format.json
    with pytest.raises(Exception, match="'csv' is not one of rich, json"):
        rich_json.convert("csv", None, None)


def test_help_takes_variable_names_and_defaults_from_the_settings():
    assert setting_help("Per commit", "batch_size") == f"Per commit [K2_BATCH_SIZE, default {Settings.batch_size}]."
    assert GROUP.help is not None and "[K2_CONSUMER_GROUP, default k2-iceberg-writer-crypto-v2]" in GROUP.help


@pytest.mark.parametrize(("args", "hint"), [
    (("consme",), "Did you mean 'consume'?"),
    (("query", "trdes"), "Did you mean 'trades'?"),
    (("dlq", "purg"), "Did you mean 'purge'?"),
])
def test_a_mistyped_command_gets_a_did_you_mean(args, hint):
    line = _one_error_line(_k2(*args))
    assert f"No such command '{args[-1]}'" in line and line.endswith(hint)


def test_a_command_nothing_resembles_gets_no_guess():
    line = _one_error_line(_k2("zzzzzz"))
    assert "No such command 'zzzzzz'" in line and "Did you mean" not in line


@pytest.mark.parametrize("args", [("stream", "binance", "--help"), ("consume", "--help"),
                                  ("query", "trades", "--help")])
def test_piped_help_keeps_every_default_and_setting_whole(args):
    from tests.conftest import run_k2

    out = run_k2(list(args)).stdout
    assert "…" not in out, out
    assert "K2_" in out
