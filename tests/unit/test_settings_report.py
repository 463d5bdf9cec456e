"""`k2 config show`: where each setting came from, the values shown (secrets ***), and the warnings about
K2_* variables and threshold names nothing reads."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from k2cli.cli.app import app
from k2cli.settings import env_name, load_settings, load_settings_with_sources, setting_names
from k2cli.settings_report import OTHER_PREFIXES, OTHER_VARIABLES, rows, unknown_thresholds, unknown_variables

pytestmark = pytest.mark.usefixtures("settings_env")
ROOT = Path(__file__).resolve().parents[2]


def test_sources_name_the_layer_that_won(tmp_path, monkeypatch):
    (tmp_path / "k2.toml").write_text('batch_size = 100\nconsumer_group = "g-toml"\n[kafka]\n'
                                      'bootstrap_servers = "toml:1"\n')
    monkeypatch.setenv("K2_CONSUMER_GROUP", "g-env")
    monkeypatch.setenv("K2_KRAKEN_SYMBOLS", "BTC/USD")
    settings, sources = load_settings_with_sources(batch_size=300, table=None)
    assert settings.batch_size == 300 and settings.consumer_group == "g-env"
    assert sources["batch_size"] == "flag" and sources["consumer_group"] == "env"
    assert sources["kafka_bootstrap_servers"] == "k2.toml" and sources["kraken_symbols"] == "env"
    assert "table" not in sources and "ping_interval" not in sources  # defaults
    assert settings == load_settings(batch_size=300)  # the same settings as before


def test_rows_show_every_setting_with_secrets_masked(monkeypatch):
    monkeypatch.setenv("K2_S3_SECRET_KEY", "s3-secret-value")
    monkeypatch.setenv("K2_ICEBERG_CATALOG_URI", "postgresql+psycopg2://k2:pg-secret@localhost:5432/c")
    settings, sources = load_settings_with_sources()
    by_name = {r.name: r for r in rows(settings, sources)}
    assert list(by_name) == setting_names()
    assert by_name["s3_secret_key"].value == "***" and by_name["s3_secret_key"].source == "env"
    assert by_name["iceberg_catalog_uri"].value == "postgresql+psycopg2://k2:***@localhost:5432/c"
    assert by_name["postgres_uri"].value == "postgresql+psycopg2://k2:***@localhost:5432/k2_catalog"
    assert by_name["data_dir"].value == str(settings.resolved_data_dir)  # the derived value in force
    assert by_name["consumer_topics"].value == list(settings.consumer_topics)
    assert by_name["kafka_bootstrap_servers"].variable == "K2_KAFKA_BOOTSTRAP_SERVERS"


def test_unknown_variables_warn_with_a_guess():
    environ = {"K2_KAFKA_BOOTSTRAP_SERVER": "x", "K2_BATCH_SIZE": "5", "K2_CONFIG": "k2.toml",
               "K2_STACK_KAFKA_HEAP": "1g", "K2_ZZZ_NOTHING": "1", "PATH": "/bin"}
    warnings = unknown_variables(environ)
    assert warnings == ["K2_KAFKA_BOOTSTRAP_SERVER is not a k2 setting and nothing in k2 reads it; did you mean "
                        "K2_KAFKA_BOOTSTRAP_SERVERS?", "K2_ZZZ_NOTHING is not a k2 setting and nothing in k2 reads it"]


def test_unknown_thresholds_warn_with_a_guess():
    from k2cli.soak.criteria import THRESHOLDS as SOAK_THRESHOLDS

    assert unknown_thresholds({"e2e_throughput_min_msg_per_s": 5.0, next(iter(SOAK_THRESHOLDS)): 1.0}) == []
    warnings = unknown_thresholds({"e2e_throughput_min": 5.0, "e2e_errors_max": 0.0})
    assert warnings == ["threshold 'e2e_throughput_min' (k2.toml [thresholds] or K2_THRESHOLDS) is not one k2 "
                        "knows; did you mean e2e_throughput_min_msg_per_s?"]


def test_every_k2_variable_read_anywhere_is_known():
    """A K2_* name in k2cli or scripts (or one a test reads from os.environ) is a setting or listed as read
    elsewhere, so `k2 config show` never warns about a variable k2 does read."""
    literal = re.compile(r"""["'{$]\{?(K2_[A-Z0-9_]*[A-Z0-9])\b""")
    environ_read = re.compile(r"""environ(?:\.get\(|\[)\s*["'](K2_[A-Z0-9_]*[A-Z0-9])["']""")
    found = {m for path in [*(ROOT / "k2cli").rglob("*.py"), *(ROOT / "scripts").glob("*")] if path.is_file()
             for m in literal.findall(path.read_text())}
    found |= {m for path in (ROOT / "tests").rglob("*.py") for m in environ_read.findall(path.read_text())}
    known = {env_name(n) for n in setting_names()} | set(OTHER_VARIABLES)
    unknown = sorted(v for v in found if v not in known and not v.startswith(OTHER_PREFIXES))
    assert not unknown, f"add these to k2cli/settings_report.py OTHER_VARIABLES (who reads them): {unknown}"
    assert "K2_CACHE_DIR" in found and "K2_BATCH_SIZE" in found


def test_config_show_text_json_and_warnings(monkeypatch):
    monkeypatch.setenv("K2_SCHEMA_REGISTRY_URL", "https://reg:reg-secret-1@registry:8443")
    monkeypatch.setenv("K2_BATCH_SIZ", "5")
    monkeypatch.setenv("K2_THRESHOLDS", "e2e_errors_mx=1")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "reg-secret-1" not in result.stdout + result.stderr
    assert re.search(r"K2_SCHEMA_REGISTRY_URL\s+.\s*https://reg:\*\*\*@registry:8443\s+.\s*env", result.stdout)
    assert result.stderr.splitlines() == [
        "k2: warning: K2_BATCH_SIZ is not a k2 setting and nothing in k2 reads it; did you mean K2_BATCH_SIZE?",
        "k2: warning: threshold 'e2e_errors_mx' (k2.toml [thresholds] or K2_THRESHOLDS) is not one k2 knows; "
        "did you mean e2e_errors_max?"]
    data = json.loads(CliRunner().invoke(app, ["config", "show", "--format", "json"]).stdout)
    assert set(data) == {"config_file", "settings", "warnings"} and len(data["warnings"]) == 2
    shown = {s["variable"]: s for s in data["settings"]}
    assert shown["K2_SCHEMA_REGISTRY_URL"] == {"name": "schema_registry_url", "variable": "K2_SCHEMA_REGISTRY_URL",
                                               "value": "https://reg:***@registry:8443", "source": "env"}
    assert shown["K2_BATCH_SIZE"]["value"] == 500 and shown["K2_BATCH_SIZE"]["source"] == "default"
    assert shown["K2_CONFIG"]["name"] == "config_file"  # read as K2_CONFIG, not K2_CONFIG_FILE


def test_config_show_refuses_an_invalid_setting_in_one_line(monkeypatch):
    monkeypatch.setenv("K2_BATCH_SIZE", "many")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("k2: error: K2_BATCH_SIZE: ") and "'many'" in lines[0]


def test_the_root_config_flag_is_shown_as_a_flag(tmp_path, monkeypatch):
    import k2cli.settings as settings_module

    monkeypatch.setattr(settings_module, "_config_flag", None)
    monkeypatch.setenv("K2_CONFIG", "unset-after-the-test")  # recorded, so the flag's K2_CONFIG is undone too
    monkeypatch.delenv("K2_CONFIG")
    config = tmp_path / "other.toml"
    config.write_text("batch_size = 123\n")
    result = CliRunner().invoke(app, ["--config", str(config), "config", "show", "--format", "json"])
    assert result.exit_code == 0, result.output
    shown = {s["variable"]: s for s in json.loads(result.stdout)["settings"]}
    assert shown["K2_CONFIG"]["source"] == "flag" and shown["K2_CONFIG"]["value"] == str(config)
    assert shown["K2_BATCH_SIZE"] == {"name": "batch_size", "variable": "K2_BATCH_SIZE", "value": 123,
                                      "source": "k2.toml"}
