"""The local stack's configuration, derived from k2's settings (the ports clients use) plus a few
stack-only knobs read from K2_STACK_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from k2cli.exchanges import registry
from k2cli.stack.errors import StackConfigError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
GREEN_PORT_OFFSET = 100  # the second collector of an exchange (green of a blue-green) serves metrics here above blue


def green_port(port: int) -> int:
    """The metrics port of an exchange's second collector (blue-green, active-active): Prometheus scrapes it too."""
    return port + GREEN_PORT_OFFSET


@dataclass(frozen=True)
class StackConfig:
    """Everything the stack services need to know; every port is bound on 127.0.0.1 only."""

    home: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    topics: tuple[str, ...] = field(default_factory=lambda: tuple(d.default_topic for d in registry.all()))
    topic_partitions: int = 6
    registry_port: int = 8081
    # the registry's second port: TLS (the stack CA) and basic auth registry_user:registry_password, or the bearer
    # token registry_token (K2_STACK_REGISTRY_TLS_PORT, _PASSWORD, _TOKEN)
    registry_tls_port: int = 18443
    registry_user: str = "k2"
    registry_password: str = "k2-registry"
    registry_token: str = "k2-registry-token"
    apicurio_port: int = 18081
    apicurio_management_port: int = 18082
    apicurio_heap: str = "384m"
    postgres_port: int = 5432
    postgres_user: str = "k2"
    postgres_password: str = "k2"
    postgres_database: str = "k2_catalog"
    registry_database: str = "k2_registry"
    prometheus_port: int = 9090
    scrape_interval: str = "5s"
    # (exchange name, metrics port of its `k2 stream`) per registered exchange: Prometheus scrapes these
    stream_metrics_ports: tuple[tuple[str, int], ...] = field(
        default_factory=lambda: tuple((d.name, d.default_metrics_port) for d in registry.all()))
    consumer_metrics_port: int = 9094
    # (listen port, advertised port) of extra plaintext Kafka listeners, one per proxy in front of the broker: a
    # client bootstrapped through a proxy then learns the proxy's address from metadata (the fault suite's
    # network faults; none on the shared stack)
    kafka_proxied_listeners: tuple[tuple[int, int], ...] = ()


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StackConfigError(f"{name}={raw!r} must be a whole number", setting=name) from None
    if not 0 < value < 65536 and name.endswith("_PORT"):
        raise StackConfigError(f"{name}={raw!r} must be a port 1..65535", setting=name)
    return value


def _local_port(value: str, setting: str, default_port: int) -> int:
    """The port of a local host:port or URL, or an error naming the setting if the host is remote."""
    parsed = urlparse(value if "://" in value else f"tcp://{value}")
    host = parsed.hostname or ""
    if host not in LOCAL_HOSTS and host.strip("[]") not in LOCAL_HOSTS:
        raise StackConfigError(f"{setting}={value!r} points at {host!r}; `k2 stack` runs services on localhost only",
                               setting=setting)
    return parsed.port or default_port


def _registry_ports(url: str) -> tuple[int, int]:
    """The registry's plain and TLS ports: an https K2_SCHEMA_REGISTRY_URL names the TLS one (plain stays 8081)."""
    from k2cli.kafka.registry_access import without_userinfo

    url = without_userinfo(url)
    if urlparse(url).scheme == "https":
        return 8081, _local_port(url, "K2_SCHEMA_REGISTRY_URL", 443)
    return _local_port(url, "K2_SCHEMA_REGISTRY_URL", 80), _int_env("K2_STACK_REGISTRY_TLS_PORT", 18443)


def _read(settings: Any, name: str, default: Any) -> Any:
    return getattr(settings, name, default) if settings is not None else default


def load_stack_config(settings: Any = None) -> StackConfig:
    """Build the stack configuration from k2 settings (load_settings() when None) and K2_STACK_* variables."""
    if settings is None:
        from k2cli.settings import load_settings

        settings = load_settings()
    home = Path(_read(settings, "home", Path(os.environ.get("K2_HOME") or Path.home() / ".k2"))).expanduser()
    bootstrap = str(_read(settings, "kafka_bootstrap_servers", "localhost:9092")).split(",")[0].strip()
    pg = urlparse(str(_read(settings, "postgres_uri", "postgresql+psycopg2://k2:k2@localhost:5432/k2_catalog")))
    if pg.hostname not in LOCAL_HOSTS:
        raise StackConfigError(f"K2_POSTGRES_URI points at {pg.hostname!r}; `k2 stack` runs services on localhost "
                               "only", setting="K2_POSTGRES_URI")
    topics = tuple(t for t in (_read(settings, f"{d.name}_topic", d.default_topic) for d in registry.all()) if t)
    registry_ports = _registry_ports(str(_read(settings, "schema_registry_url", "http://localhost:8081")))
    cfg = StackConfig(
        home=home,
        kafka_port=_local_port(bootstrap, "K2_KAFKA_BOOTSTRAP_SERVERS", 9092),
        kafka_controller_port=_int_env("K2_STACK_KAFKA_CONTROLLER_PORT", 19093),
        kafka_heap=os.environ.get("K2_STACK_KAFKA_HEAP", "512m"),
        topics=topics,
        topic_partitions=_int_env("K2_STACK_TOPIC_PARTITIONS", 6),
        registry_port=registry_ports[0],
        registry_tls_port=registry_ports[1],
        registry_password=os.environ.get("K2_STACK_REGISTRY_PASSWORD") or "k2-registry",
        registry_token=os.environ.get("K2_STACK_REGISTRY_TOKEN") or "k2-registry-token",
        apicurio_port=_int_env("K2_STACK_APICURIO_PORT", 18081),
        apicurio_management_port=_int_env("K2_STACK_APICURIO_MANAGEMENT_PORT", 18082),
        apicurio_heap=os.environ.get("K2_STACK_APICURIO_HEAP", "384m"),
        postgres_port=pg.port or 5432,
        postgres_user=pg.username or "k2",
        postgres_password=pg.password or "k2",
        postgres_database=(pg.path or "/k2_catalog").lstrip("/") or "k2_catalog",
        registry_database=os.environ.get("K2_STACK_REGISTRY_DATABASE", "k2_registry"),
        prometheus_port=_local_port(str(_read(settings, "prometheus_url", "http://localhost:9090")),
                                    "K2_PROMETHEUS_URL", 80),
        stream_metrics_ports=tuple((d.name, int(_read(settings, f"{d.name}_metrics_port", d.default_metrics_port)))
                                   for d in registry.all()),
        consumer_metrics_port=int(_read(settings, "consumer_metrics_port", 9094)),
    )
    _check_distinct(cfg)
    return cfg


def stream_scrape_configs(ports: tuple[tuple[str, int], ...]) -> str:
    """The Prometheus scrape jobs of the streams (prometheus.yml.tmpl's {{stream_scrape_configs}}): each exchange's
    metrics port and its green port, so two collectors of one exchange are two instances of one job."""
    return "\n".join(f"  - job_name: {registry.get(name).scrape_job}\n"
                     "    static_configs:\n"
                     f'      - targets: ["127.0.0.1:{port}", "127.0.0.1:{green_port(port)}"]\n'
                     "        labels:\n"
                     f"          exchange: {name}" for name, port in ports)


def _check_distinct(cfg: StackConfig) -> None:
    """Two services on one port can never both start: say which ones clash."""
    bound = {
        "kafka": cfg.kafka_port,
        "kafka controller (K2_STACK_KAFKA_CONTROLLER_PORT)": cfg.kafka_controller_port,
        "schema-registry": cfg.registry_port,
        "schema-registry TLS (K2_STACK_REGISTRY_TLS_PORT)": cfg.registry_tls_port,
        "apicurio (K2_STACK_APICURIO_PORT)": cfg.apicurio_port,
        "apicurio management (K2_STACK_APICURIO_MANAGEMENT_PORT)": cfg.apicurio_management_port,
        "postgres": cfg.postgres_port,
        "prometheus": cfg.prometheus_port,
        **{f"stream-{name} metrics": port for name, port in cfg.stream_metrics_ports},
        **{f"stream-{name} green metrics": green_port(port) for name, port in cfg.stream_metrics_ports},
        "consumer metrics": cfg.consumer_metrics_port,
    }
    seen: dict[int, str] = {}
    for name, port in bound.items():
        if port and port in seen:
            raise StackConfigError(f"{name} and {seen[port]} are both configured on port {port}")
        seen[port] = name
