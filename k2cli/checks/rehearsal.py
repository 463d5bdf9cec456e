"""A dress rehearsal for `k2 validate deploy --post`: a short-lived production-shaped pipeline on the local stack.

A simulator per registered exchange serves wss:// with a throw-away CA; a `k2 stream` per exchange and
`k2 consume` run on the metrics ports Prometheus scrapes, into topics, a table, a group and a DLQ of their
own (so no simulated trade reaches the real ones). Rotation and ping intervals are scaled down so the
window holds enough of them (the seed's per-day figures scaled with them), and the 7-day look-back shrinks
to the window. Before the window, the checked exchange's collector goes through a blue-green deploy: a green
`k2 stream` on the green metrics port beside blue, both producing, then blue stopped with SIGTERM (so the window,
and the 7-day figures, see green alone). The post-deployment checklist then runs against this pipeline while it
is still running.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from k2cli.checks.probes.proc import Spawned, error_line, spawn_k2
from k2cli.errors import ConfigError, K2Error
from k2cli.exchanges import registry
from k2cli.exchanges.descriptor import ExchangeDescriptor
from k2cli.settings import Settings
from k2cli.stack.config import green_port
from k2cli.stack.health import port_open

K2_JOBS = (*(d.scrape_job for d in registry.all()), "k2-consumer")  # the scrape jobs of the stack's Prometheus
RATE_PER_EXCHANGE = 150.0  # trades/s each simulator serves: 300 msg/s for the consumer, above the 100 msg/s limit
MIN_MINUTES = 1.0
BG_OVERLAP_S = 12.0  # blue and green both scraped up this long before blue is stopped (a scrape every 5 s)
BG_CHECKS_WITHIN_S = 300.0  # the blue-green steps run within this long after the window (their look-back)

Progress = Callable[[str, float, float], None]  # (what is happening, seconds done, seconds in all)


class RehearsalError(K2Error):
    """The rehearsal pipeline could not start or died before the checklist ran."""


@dataclass(frozen=True)
class Timing:
    """How long the pipeline runs before the checklist and the intervals scaled to that window."""

    window_s: float
    rotation_interval: float
    ping_interval: float

    @property
    def rotations(self) -> float:
        """Scheduled rotations the window holds."""
        return self.window_s / self.rotation_interval

    @property
    def pings(self) -> float:
        """Heartbeat pings the window holds."""
        return self.window_s / self.ping_interval


def timing(minutes: float) -> Timing:
    """About 12 rotations and 60 pings in the window (integer counts then sit well within a 20% tolerance)."""
    if minutes < MIN_MINUTES:
        raise ConfigError(f"--rehearse {minutes:g}: a rehearsal needs at least {MIN_MINUTES:g} minute",
                          setting="--rehearse")
    window = minutes * 60.0
    return Timing(window, min(max(window / 12, 10.0), 4 * 3600.0), min(max(window / 60, 2.0), 180.0))


@dataclass(frozen=True)
class Names:
    """Where the rehearsal pipeline writes: never the operator's own topics, table, group or DLQ."""

    topic: dict[str, str]  # exchange name -> its rehearsal topic
    table: str
    group: str
    dlq_dir: Path

    @property
    def topics(self) -> tuple[str, ...]:
        """Every exchange's topic."""
        return tuple(self.topic.values())


def names(settings: Settings, workdir: Path, run_id: str) -> Names:
    """Rehearsal names derived from the operator's, tagged with the run id."""
    namespace, _, table = settings.table.rpartition(".")
    tag = f"rehearsal-{run_id}"
    return Names({name: f"{es.topic}.{tag}" for name, es in settings.exchanges.items()},
                 f"{namespace or 'default'}.{table}_{tag.replace('-', '_')}", f"{settings.consumer_group}.{tag}",
                 workdir / "dlq")


def rest_base(ws_url: str) -> str:
    """A simulator's REST base URL (it serves REST on its WebSocket's port)."""
    scheme, rest = ws_url.split("://", 1)
    return f"{'https' if scheme == 'wss' else 'http'}://{rest.split('/', 1)[0]}"


def environment(settings: Settings, t: Timing, n: Names, urls: dict[str, str], ca_bundle: Path,
                bg_lookback_s: float = 0.0) -> dict[str, str]:
    """The K2_* variables every rehearsal process runs with (the checklist's own settings included)."""
    thresholds = {**settings.thresholds, "prod_window_days": t.window_s / 86400, "post_error_window_s": t.window_s,
                  "post_throughput_window_s": min(300.0, t.window_s),
                  "prod_rotations_per_day": 86400 / t.rotation_interval, "prod_pings_per_day": 86400 / t.ping_interval,
                  "bg_dual_min_s": BG_OVERLAP_S / 2, "bg_green_only_min_s": t.window_s,
                  "bg_lookback_s": bg_lookback_s or t.window_s}
    return {
        **{registry.get(name).setting(key): url for name, url in urls.items() for key in ("url", "failover_urls")},
        **{registry.get(name).setting("rest_url"): rest_base(url) for name, url in urls.items()
           if registry.get(name).default_rest_url},
        "K2_SSL_VERIFY": "true", "K2_CA_BUNDLE": str(ca_bundle),
        "K2_ROTATION_INTERVAL": f"{t.rotation_interval:g}", "K2_PING_INTERVAL": f"{t.ping_interval:g}",
        **{registry.get(name).setting("topic"): topic for name, topic in n.topic.items()},
        "K2_CONSUMER_TOPICS": ",".join(n.topics), "K2_TABLE": n.table, "K2_CONSUMER_GROUP": n.group,
        "K2_DLQ_DIR": str(n.dlq_dir),
        "K2_THRESHOLDS": ",".join(f"{k}={v!r}" for k, v in thresholds.items()),
    }


@dataclass
class Rehearsal:
    """Start the pipeline, let it run for the window, stop it and remove what it wrote."""

    settings: Settings
    minutes: float
    workdir: Path
    progress: Progress = lambda message, done, total: None
    keep: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    bg_exchange: str = registry.default().name  # the exchange whose collector goes blue-green (the one checked)
    processes: dict[str, Spawned] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.timing = timing(self.minutes)
        self.names = names(self.settings, self.workdir, self.run_id)
        self.topics_created: list[str] = []
        self.retired: set[str] = set()  # stopped on purpose before the end (blue after the cut-over)

    def start(self) -> dict[str, str]:
        """Start simulators, streams and consumer; return the environment the checklist must run with."""
        s = self.settings
        ports = {**{f"{name}_metrics_port": es.metrics_port for name, es in s.exchanges.items()},
                 "consumer_metrics_port": s.consumer_metrics_port,
                 f"{self.bg_exchange} green port, {self.bg_exchange}_metrics_port + 100":
                     green_port(s.exchanges[self.bg_exchange].metrics_port)}
        for setting, port in ports.items():
            if port_open(port):
                raise RehearsalError(f"port {port} ({setting}) is in use: a rehearsal runs its own stream and "
                                     "consumer on the ports Prometheus scrapes; stop the running pipeline first")
        self._check_prometheus()
        from k2cli.checks.probes.tls import make_tls

        tls = make_tls(self.workdir / "tls")
        urls = {d.name: self._simulator(d, tls.cert, tls.key) for d in registry.all()}
        self.env = environment(s, self.timing, self.names, urls, tls.ca)
        self._create_topics()
        for name in registry.names():
            self._spawn(f"stream-{name}", ["stream", name, "--verbose"])
        self._spawn("consumer", ["consume", "--verbose"])
        self._wait_scraped()
        started = time.monotonic()
        self._blue_green()
        lookback = time.monotonic() - started + self.timing.window_s + BG_CHECKS_WITHIN_S
        self.env.update(environment(s, self.timing, self.names, urls, tls.ca, lookback))
        return self.env

    def _check_prometheus(self) -> None:
        """Prometheus must answer before anything starts: the checklist reads everything else from it."""
        from k2cli.observe.prometheus_api import Prometheus

        prom = Prometheus(self.settings.prometheus_url)
        try:
            ok, text = prom.ready()
        finally:
            prom.close()
        if not ok:
            raise RehearsalError(f"Prometheus at {self.settings.prometheus_url} is not ready: {text}")

    def _simulator(self, exchange: ExchangeDescriptor, cert: Path, key: Path) -> str:
        """Start an exchange's simulator; the URL its stream uses (with the path of the API version rehearsed)."""
        from k2cli.checks.probes.pipeline import launch_simulator

        sim = launch_simulator(self.workdir, exchange.name, rate=RATE_PER_EXCHANGE, tls_cert=cert, tls_key=key)
        self.processes[f"simulate-{exchange.name}"] = sim.process
        path = exchange.rehearsal_url_path
        return sim.url.rstrip("/") + path if path else sim.url

    def _spawn(self, name: str, args: list[str], extra: dict[str, str] | None = None) -> None:
        self.processes[name] = spawn_k2(args, str(self.workdir), {**self.env, **(extra or {})} or None)

    def _create_topics(self) -> None:
        from k2cli.checks.probes import kafka
        from k2cli.errors import ServiceUnavailable

        for topic in self.names.topics:
            try:
                kafka.create_topic(self.settings, topic, 3)
            except ServiceUnavailable as exc:  # says which topic and why
                raise RehearsalError(f"{exc.args[0]} (Kafka at {self.settings.kafka_bootstrap_servers})") from None
            except Exception as exc:  # e.g. no answer within the timeout
                raise RehearsalError(f"cannot create topic {topic} at {self.settings.kafka_bootstrap_servers}: "
                                     f"{exc}") from None
            self.topics_created.append(topic)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if name not in self.retired and not proc.alive():
                _, err = proc.output()
                raise RehearsalError(f"{name} exited {proc.proc.returncode}: {error_line(err) or '(no output)'}")

    def _wait_scraped(self, timeout: float = 90.0) -> None:
        """Until Prometheus scrapes all three processes, then until alerts from before the rehearsal resolve."""
        from k2cli.observe.prometheus_api import Prometheus

        prom = Prometheus(self.settings.prometheus_url)
        try:
            t0 = time.monotonic()
            while True:
                self._check_alive()
                up = {labels.get("job") for labels, value in prom.query('up{job=~"k2-.*"}') if value == 1}
                missing = [job for job in K2_JOBS if job not in up]
                if not missing:
                    break
                waited = time.monotonic() - t0
                if waited > timeout:
                    raise RehearsalError(f"Prometheus at {self.settings.prometheus_url} does not scrape "
                                         f"{', '.join(missing)} after {timeout:g} s (do its scrape targets use the "
                                         "metrics ports of these settings? `k2 stack up` renders them)")
                self.progress(f"waiting for Prometheus to scrape {', '.join(missing)}", waited, timeout)
                time.sleep(1)
            t1 = time.monotonic()
            while prom.query('ALERTS{alertstate="firing"}') and time.monotonic() - t1 < 60:
                self._check_alive()
                self.progress("waiting for alerts from before the rehearsal to resolve", time.monotonic() - t1, 60)
                time.sleep(2)
        finally:
            prom.close()

    def _blue_green(self) -> None:
        """Green beside blue on the green port until Prometheus saw both up for BG_OVERLAP_S, then blue SIGTERMed."""
        from k2cli.observe.prometheus_api import Prometheus

        ex = self.bg_exchange
        desc = registry.get(ex)
        port = green_port(self.settings.exchanges[ex].metrics_port)
        self._spawn(f"stream-{ex}-green", ["stream", ex, "--verbose"],
                    {desc.setting("metrics_port"): str(port)})
        prom = Prometheus(self.settings.prometheus_url)
        expr = f'count(up{{job="{desc.scrape_job}"}} == 1)'
        try:
            t0 = time.monotonic()
            while (prom.value(expr) or 0) < 2:
                self._check_alive()
                if time.monotonic() - t0 > 60:
                    raise RehearsalError(f"Prometheus at {self.settings.prometheus_url} does not scrape the green "
                                         f"{ex} stream on port {port} after 60 s (a stream job scrapes its "
                                         "metrics port and port + 100; `k2 stack up` renders them)")
                self.progress(f"blue-green: waiting for Prometheus to scrape green on port {port}",
                              time.monotonic() - t0, 60)
                time.sleep(1)
        finally:
            prom.close()
        t1 = time.monotonic()
        while (done := time.monotonic() - t1) < BG_OVERLAP_S:
            self._check_alive()
            self.progress(f"blue-green: {ex} blue and green both producing", done, BG_OVERLAP_S)
            time.sleep(1)
        blue = f"stream-{ex}"
        self.retired.add(blue)
        stopped = self.processes[blue].stop()
        if stopped.returncode != 0:
            raise RehearsalError(f"blue {blue} exited {stopped.returncode} on SIGTERM: "
                                 f"{error_line(stopped.stderr) or '(no output)'}")

    def run_window(self) -> None:
        """Let the pipeline run for the window (RehearsalError if a process dies meanwhile)."""
        t = self.timing
        t0 = time.monotonic()
        while (done := time.monotonic() - t0) < t.window_s:
            self._check_alive()
            self.progress(f"pipeline running: rotations every {t.rotation_interval:g} s, pings every "
                          f"{t.ping_interval:g} s", done, t.window_s)
            time.sleep(min(1.0, t.window_s - done))
        self._check_alive()

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process (consumer and streams first); remove the topics and table unless keep."""
        order = ["consumer", *(f"stream-{n}" for n in registry.names()), f"stream-{self.bg_exchange}-green",
                 *(f"simulate-{n}" for n in registry.names())]
        codes: dict[str, int | None] = {}
        for name in sorted(self.processes, key=lambda n: order.index(n) if n in order else len(order)):
            codes[name] = self.processes[name].stop().returncode
        if not self.keep:
            self._remove()
        return codes

    def _remove(self) -> None:
        from k2cli.checks.probes import kafka
        from k2cli.checks.probes.pipeline import delete_subject_at
        from k2cli.lake.catalog import open_catalog

        for topic in self.topics_created:
            kafka.delete_topic(self.settings, topic)
            delete_subject_at(self.settings, f"{topic}-value")
        with contextlib.suppress(Exception):  # clean-up is best effort
            open_catalog(self.settings).purge_table(self.names.table)
