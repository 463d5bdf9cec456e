"""Secrets never shown (issue 15): real commands run against the stack with known secrets in the environment, in
k2.toml and in a flag, succeeding and failing ones (a wrong PostgreSQL password, an unreachable registry whose URL
carries user-info, a WebSocket URL with a token); every stdout, stderr and report file is searched for each
secret in every spelling it could take (as is, JSON- and XML-escaped, percent-encoded, base64 of user:pass)."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path
from urllib.parse import quote

import pytest

from k2cli.settings import Settings
from tests.conftest import require

pytestmark = pytest.mark.integration

PG = "PgWrong-Secret-31"  # a wrong password: the catalog refuses it
REGISTRY_URL_PW = "RegUrl-Secret-52"
WS_TOKEN = "WsToken-Secret-18"  # in a flag: --url ws://...?token=
# variable -> (value, the secret it holds); some are settings of other branches of issue 15: set all the same
ENV_SECRETS = {
    "K2_ICEBERG_CATALOG_URI": (f"postgresql+psycopg2://k2:{PG}@localhost:5432/k2_catalog", PG),
    "K2_SCHEMA_REGISTRY_URL": (f"http://reguser:{REGISTRY_URL_PW}@localhost:8081", REGISTRY_URL_PW),
    "K2_KAFKA_SASL_PASSWORD": ('Sasl"Pw&<63>|x', 'Sasl"Pw&<63>|x'),
    "K2_KAFKA_SSL_KEY_PASSWORD": ("KeyPass-Secret-29", "KeyPass-Secret-29"),
    "K2_SCHEMA_REGISTRY_BASIC_AUTH": ("reguser:RegBasic-Secret-74", "RegBasic-Secret-74"),
    "K2_SCHEMA_REGISTRY_BEARER_TOKEN": ("RegBearer-Token-85", "RegBearer-Token-85"),
    "K2_ICEBERG_CATALOG_CREDENTIAL": ("client:IcebergCred-Secret-96", "IcebergCred-Secret-96"),
    "K2_ICEBERG_CATALOG_TOKEN": ("IcebergTok-Secret-07", "IcebergTok-Secret-07"),
}
TOML_SECRETS = {"s3_secret_key": "TomlS3Secret-4f1", "s3_access_key": "TomlS3Access-9c2",
                "binance_rest_api_key": "TomlApiKey-7d3"}
KAFKA_PROPERTY_SECRET = "OauthClient-Secret-40"  # [kafka] "sasl.oauthbearer.client.secret", where [kafka] is a table
SECRETS = [WS_TOKEN, *(secret for _, secret in ENV_SECRETS.values()), *TOML_SECRETS.values(), KAFKA_PROPERTY_SECRET]


def spellings(secret: str) -> set[str]:
    """Every form in which a secret could appear in k2's text outputs."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], escape(secret),
             escape(secret, quote=False), secret.replace('"', "&quot;"), quote(secret, safe=""), quote(secret)}
    forms |= {base64.b64encode(f"{user}:{secret}".encode()).decode() for user in ("reguser", "client", "k2")}
    return forms


def leaks(outputs: dict[str, str]) -> list[str]:
    """`where: secret` for every secret found in any output, in any spelling."""
    return [f"{where}: {secret}" for where, text in outputs.items() for secret in SECRETS
            if any(form in text for form in spellings(secret))]


def _has_setting(name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(Settings)}


@pytest.fixture
def secret_env(k2_env, tmp_path):
    """k2_env with every secret set: environment variables, and a k2.toml in the working directory."""
    toml = "".join(f'{k} = "{v}"\n' for k, v in TOML_SECRETS.items())
    if _has_setting("kafka_properties"):  # the librdkafka pass-through table (Kafka security branch)
        toml += f'[kafka]\n"sasl.oauthbearer.client.secret" = "{KAFKA_PROPERTY_SECRET}"\n'
    (tmp_path / "k2.toml").write_text(toml)
    return {**k2_env, **{k: value for k, (value, _) in ENV_SECRETS.items()}, "K2_CONFIG": str(tmp_path / "k2.toml"),
            "K2_CONSUMER_STARTUP_TIMEOUT": "2"}


def _run(args: list[str], env: dict[str, str], cwd: Path,
         python: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(python or [sys.executable, "-m", "k2cli"]), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=90)


def _runs(env: dict[str, str], cwd: Path, unique: str) -> dict[str, subprocess.CompletedProcess]:
    """The commands, three at a time: settings, a consumer and a query failing on the catalog, validate reports
    in every format, status, and a stream's JSON logs."""
    bad_registry = {**env, "K2_SCHEMA_REGISTRY_URL": f"http://reguser:{REGISTRY_URL_PW}@127.0.0.1:9"}
    validate = ["validate", "prereqs", "--step", "prereqs.registry,prereqs.catalog"]
    jobs = {
        "config show": (["config", "show"], env),
        "config show json": (["config", "show", "--format", "json"], env),
        "consume": (["consume", "--topics", "market.crypto.trades.binance", "--max-messages", "1", "--group",
                     f"secrets-{unique}", "--metrics-port", "0", "--log-format", "json", "--log-level", "debug"], env),
        "query": (["query", "trades", "--limit", "1", "--format", "json"], env),
        "validate json": ([*validate, "--format", "json"], bad_registry),
        "validate junit": ([*validate, "--format", "junit", "--output", "report.xml"], bad_registry),
        "validate markdown": ([*validate, "--format", "markdown", "--output", "report.md"], bad_registry),
        "validate rich": ([*validate, "--format", "rich", "--output", "report.txt"], bad_registry),
        "status": (["status", "--format", "json"], env),
        "stream": (["stream", "binance", "--url", f"ws://127.0.0.1:9/stream?token={WS_TOKEN}", "--duration", "2",
                    "--metrics-port", "0", "--no-backfill", "--log-format", "json", "--log-level", "debug"], env),
    }
    with ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(_run, args, job_env, cwd) for name, (args, job_env) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def test_no_secret_in_any_output(secret_env, tmp_path, unique):
    require("kafka", "schema-registry", "postgres", "prometheus")
    runs = _runs(secret_env, tmp_path, unique)
    outputs = {f"{name} {stream}": getattr(proc, stream) for name, proc in runs.items()
               for stream in ("stdout", "stderr")}
    outputs |= {name: (tmp_path / name).read_text() for name in ("report.xml", "report.md", "report.txt")}
    assert not leaks(outputs), "secrets shown:\n" + "\n".join(leaks(outputs))

    codes = {name: proc.returncode for name, proc in runs.items()}
    assert codes["config show"] == codes["config show json"] == 0, runs["config show"].stderr
    assert codes["consume"] == codes["query"] == 3, (runs["consume"].stderr, runs["query"].stderr)
    for name in ("consume", "query"):  # failed on the catalog, its URI shown with the password masked
        assert "postgresql+psycopg2://k2:***@localhost:5432/k2_catalog" in runs[name].stderr
    assert all(codes[f"validate {f}"] == 2 for f in ("json", "junit", "markdown", "rich")), codes
    assert "Schema Registry unreachable at http://127.0.0.1:9" in outputs["report.md"]  # the failing path ran
    assert json.loads(runs["status"].stdout)["exit_code"] == codes["status"]
    assert "token=***" in runs["stream"].stderr and codes["stream"] == 0, runs["stream"].stderr

    shown = {s["name"]: s["value"] for s in json.loads(runs["config show json"].stdout)["settings"]}
    names = [*(n for n in (k[3:].lower() for k in ENV_SECRETS) if _has_setting(n)), *TOML_SECRETS]
    assert all("***" in str(shown[name]) for name in names), {name: shown[name] for name in names}


def test_the_search_finds_a_secret_shown(secret_env, tmp_path):
    """Red path: `k2 config show` with the redaction switched off in its process shows the secrets, and the
    search above reports every secret of a setting that exists."""
    off = ("import sys, k2cli.redaction as r; r.redact = lambda t: t; r.redact_value = lambda n, v: v; "
           "r.register = lambda v: None; sys.argv = ['k2', *sys.argv[1:]]; from k2cli.cli.app import main; main()")
    proc = _run(["config", "show", "--format", "json"], secret_env, tmp_path, [sys.executable, "-c", off])
    assert proc.returncode == 0, proc.stderr
    found = {line.split(": ", 1)[1] for line in leaks({"config show": proc.stdout})}
    expected = {secret for k, (_, secret) in ENV_SECRETS.items() if _has_setting(k[3:].lower())}
    expected |= {*TOML_SECRETS.values(), *([KAFKA_PROPERTY_SECRET] if _has_setting("kafka_properties") else [])}
    assert len(expected) >= 8 and expected <= found, expected - found
