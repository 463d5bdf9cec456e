"""A table name that cannot be namespace.table is refused up front: one line, exit 2, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from k2cli.cli.app import app
from k2cli.errors import ConfigError
from k2cli.settings import load_settings


@pytest.mark.parametrize("name", ["foo", ".x", "x.", "a..b", "a. b", " "])
def test_a_bad_table_name_is_a_config_error(settings_env, name):
    with pytest.raises(ConfigError, match="namespace.table"):
        load_settings(table=name)


@pytest.mark.parametrize("name", ["market_data.trades_v2", "ns.t-1", "a.b.c"])
def test_good_table_names_pass(settings_env, name):
    assert load_settings(table=name).table == name


@pytest.mark.parametrize("args", [
    ("query", "trades"), ("query", "snapshots"), ("query", "sql", "SELECT 1"), ("query", "freshness"),
    ("consume", "--max-messages", "1"),
])
def test_k2_table_foo_is_one_line(settings_env, monkeypatch, args):
    monkeypatch.setenv("K2_TABLE", "foo")
    result = CliRunner().invoke(app, list(args))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and lines == [lines[0]] and "K2_TABLE" in lines[0], (result.exit_code, result.stderr)
    assert "'foo'" in lines[0] and "Traceback" not in result.stderr


def test_table_flag_dot_x_is_one_line(settings_env):
    result = CliRunner().invoke(app, ["query", "trades", "--table", ".x"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "'.x'" in lines[0], (result.exit_code, result.stderr)
