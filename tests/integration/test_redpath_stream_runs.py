"""Red paths of the streaming/resilience steps that run `k2 stream`, `k2 simulate` or the serializer cache against
the real broker and registry. The fault is made for real: nothing listening, a server k2 reaches without
verifying a certificate, a certificate from another CA, a stream whose pong or idle timeout is too long to fire,
a serializer cache that never evicts, a `k2` command without the soak flags. Each step's measure_* function must
turn red with the reason in its result."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from k2cli.checks.checklists import resilience, streaming
from k2cli.checks.context import Context, Options
from k2cli.checks.probes import pipeline, proc
from k2cli.checks.probes.tls import make_tls
from k2cli.kafka import serde
from k2cli.settings import Settings
from k2cli.verdict import Status
from tests.conftest import require
from tests.integration.validate_support import dead_port
from tests.unit.redpath_support import assert_red

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    """A resilience Context over the local stack; every process and scratch topic it starts ends with the test."""
    for key in ("K2_HOME", "K2_DATA_DIR", "K2_DLQ_DIR", "K2_SSL_VERIFY", "K2_CA_BUNDLE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("K2_HOME", str(tmp_path / "home"))  # for the k2 processes the steps start
    context = Context(Settings(home=tmp_path / "home"), Options(exchange="binance"), checklist="redpath")
    yield context
    context.close()


def test_nothing_listening_fails_connect(ctx):
    url = f"ws://127.0.0.1:{dead_port()}/ws"
    ctx.options = dataclasses.replace(ctx.options, url=url)
    assert_red(streaming.measure_connect(ctx), Status.FAIL, "cannot connect to ws://127.0.0.1:", "ConnectionRefused")


def test_trades_taken_without_certificate_verification_fail_bad_cert(ctx):
    require("kafka", "schema-registry")
    sim = pipeline.start_simulator(ctx, "binance", symbols=resilience._symbols(ctx), rate=50)
    ctx.state["tls"] = (sim.url, None)  # plain ws://: the stream takes trades and verifies nothing
    result = resilience.measure_tls_bad_cert(ctx)
    assert_red(result, Status.FAIL, "trades accepted from a server with an untrusted certificate")
    assert result.measured > 0


def test_a_certificate_from_another_ca_fails_tls_valid(ctx):
    require("kafka", "schema-registry")
    served, other = make_tls(ctx.workdir / "served"), make_tls(ctx.workdir / "other")
    sim = pipeline.start_simulator(ctx, "binance", symbols=resilience._symbols(ctx), rate=50,
                                   tls_cert=str(served.cert), tls_key=str(served.key))
    ctx.state["tls"] = (sim.url, other)  # the stream is given a CA that did not sign the server's certificate
    assert_red(resilience.measure_tls_valid(ctx), Status.FAIL, f"no trades over verified TLS from {sim.url}",
               "TLS certificate of", "was refused")


def with_flags(monkeypatch, *flags: str) -> None:
    """The steps' fault runs pass these `k2 stream` flags last (the last occurrence of a flag wins)."""
    original = resilience._fault_run

    def run(ctx: Context, sim_faults: dict[str, Any], extra: list[str], duration: float) -> pipeline.StreamRun:
        return original(ctx, sim_faults, [*extra, *flags], duration)

    monkeypatch.setattr(resilience, "_fault_run", run)


def test_a_pong_timeout_that_never_fires_fails(ctx, monkeypatch):
    require("kafka", "schema-registry")
    with_flags(monkeypatch, "--pong-timeout", "600")  # the simulator never answers; the stream never notices
    result = resilience.measure_pong_timeout(ctx)
    assert_red(result, Status.FAIL, "the stream did not reconnect after unanswered pings",
               "pong timeouts 0, reconnects for pong_timeout 0")


def test_an_idle_timeout_that_never_fires_fails(ctx, monkeypatch):
    require("kafka", "schema-registry")
    with_flags(monkeypatch, "--idle-timeout", "600")  # the simulator goes silent; the stream waits on
    assert_red(resilience.measure_idle_reconnect(ctx), Status.FAIL, "no reconnect after 2 s without frames")


class UnboundedCache(serde.SerializerCache):
    """The first k2's cache: it never evicts."""

    def __init__(self, registry: Any, max_size: int = 10, **kwargs: Any) -> None:
        super().__init__(registry, max_size=10**9, **kwargs)


def test_a_cache_that_never_evicts_fails_eviction_and_memory(ctx, monkeypatch):
    require("schema-registry")
    monkeypatch.setattr(serde, "SerializerCache", UnboundedCache)
    assert_red(resilience.measure_cache_eviction(ctx), Status.FAIL, "0 evictions and size 15; expected 5 and 10")
    result = resilience.measure_cache_memory(ctx)
    assert_red(result, Status.FAIL, "KiB retained over 110 more subjects", "cache size 120, evictions 0")


def test_a_k2_without_the_soak_flags_fails_soak_command(ctx, monkeypatch):
    # `k2 soak --help` answered by a command that lacks --hours and --output-dir (`k2 stream --help`)
    monkeypatch.setattr(resilience, "run_k2", lambda args, timeout: proc.run_k2(["stream", "--help"], timeout=timeout))
    assert_red(resilience.measure_soak_command(ctx), Status.FAIL, "`k2 soak --help` lacks", "--hours")
