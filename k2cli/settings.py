"""One settings object: defaults < k2.toml < K2_* environment < flags."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from k2cli import redaction
from k2cli.errors import ConfigError

if TYPE_CHECKING:
    from k2cli.exchanges.descriptor import ExchangeDescriptor

TRADES_TABLE = "market_data.trades_v2"
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]  # "": not set
CONSUMER_GROUP = "k2-iceberg-writer-crypto-v2"


def _home() -> Path:
    return Path(os.environ.get("K2_HOME") or Path.home() / ".k2").expanduser()


@dataclass(frozen=True)
class ExchangeSettings:
    """One exchange's settings: env `K2_<NAME>_<KEY>`, k2.toml `<name>_<key>` or `[<name>] <key>`."""

    url: str
    failover_urls: tuple[str, ...]
    symbols: tuple[str, ...]
    topic: str
    metrics_port: int
    rest_url: str = ""  # the REST API backfill reads (exchanges with descriptor.rest)
    rest_api_key: str = ""  # sent in the dialect's API key header (exchanges whose REST API takes one)


EXCHANGE_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExchangeSettings))


def exchange_keys(descriptor: ExchangeDescriptor) -> tuple[str, ...]:
    """The settings an exchange has: every exchange's, plus its REST API's when it has one."""
    rest = descriptor.rest
    return tuple(key for key in EXCHANGE_KEYS
                 if not key.startswith("rest_") or (rest is not None and (key == "rest_url" or rest.api_key_header)))


def exchange_defaults(descriptor: ExchangeDescriptor) -> ExchangeSettings:
    """An exchange's settings as its descriptor gives them."""
    d = descriptor
    return ExchangeSettings(url=d.default_url, failover_urls=d.default_failover_urls, symbols=d.default_symbols,
                            topic=d.default_topic, metrics_port=d.default_metrics_port,
                            rest_url=d.default_rest_url if d.rest is not None else "")


def _exchange_defaults() -> dict[str, ExchangeSettings]:
    """Every registered exchange's settings as its descriptor gives them."""
    from k2cli.exchanges import registry

    return {d.name: exchange_defaults(d) for d in registry.all()}


def _default_topics() -> tuple[str, ...]:
    """The default topics of `k2 consume`: every registered exchange's default topic."""
    from k2cli.exchanges import registry

    return tuple(d.default_topic for d in registry.all())


@dataclass(frozen=True)
class Settings:
    """Every setting k2 reads; the env var of field `x` is `K2_X`, its k2.toml key is `x`."""

    home: Path = field(default_factory=_home)
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = ""  # required with SASL_*: no silent GSSAPI default
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_location: str = ""  # empty: the system's CA store
    kafka_ssl_certificate_location: str = ""  # client certificate (mTLS), PEM
    kafka_ssl_key_location: str = ""  # its private key, PEM
    kafka_ssl_key_password: str = ""  # the key's passphrase, if it is encrypted
    kafka_properties: dict[str, str] = field(default_factory=dict)  # librdkafka pass-through (k2.toml [kafka])
    schema_registry_url: str = "http://localhost:8081"
    schema_registry_basic_auth: str = ""  # user:pass (or user-info in the URL); a secret
    schema_registry_bearer_token: str = ""  # sent as Authorization: Bearer; a secret
    schema_registry_ca_location: str = ""  # CA bundle (PEM) an https registry's certificate is verified with
    iceberg_catalog_uri: str = ""  # empty: a SQLite catalog inside data_dir
    iceberg_warehouse: str = ""  # empty: a local warehouse inside data_dir
    iceberg_catalog_credential: str = ""  # REST catalog OAuth2 client credential `client_id:client_secret`
    iceberg_catalog_token: str = ""  # REST catalog bearer token
    iceberg_catalog_scope: str = ""  # REST catalog OAuth2 scope; empty: pyiceberg's default (catalog)
    data_dir: Path = Path()  # empty: $K2_HOME/data
    dlq_dir: Path = Path()  # empty: data_dir/dlq
    prometheus_url: str = "http://localhost:9090"
    postgres_uri: str = "postgresql+psycopg2://k2:k2@localhost:5432/k2_catalog"
    s3_endpoint: str = ""  # e.g. http://minio:9000 for an s3:// warehouse
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool = True  # path-style requests (http://host/bucket/key), as S3-compatible servers want

    exchanges: Mapping[str, ExchangeSettings] = field(default_factory=_exchange_defaults)  # by exchange name

    ping_interval: float = 180.0
    pong_timeout: float = 10.0
    idle_timeout: float = 30.0
    rotation_interval: float = 4 * 3600.0
    ssl_verify: bool = True
    ca_bundle: str = ""
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    max_reconnects: int = 0  # 0: never give up
    serializer_cache_max_size: int = 10
    producer_buffer_max_messages: int = 100_000

    consumer_group: str = CONSUMER_GROUP
    consumer_topics: tuple[str, ...] = field(default_factory=_default_topics)
    consumer_metrics_port: int = 9094
    batch_size: int = 500
    flush_interval: float = 5.0
    table: str = TRADES_TABLE
    snapshots_to_keep: int = 100
    gap_large_threshold: int = 10

    thresholds: dict[str, float] = field(default_factory=dict)
    config_file: str = ""
    stream_flush_timeout: float = 30.0  # seconds `k2 stream` waits for Kafka at shutdown
    backfill: bool = True  # `k2 stream` fills gaps in trade ids from the exchange's REST API
    backfill_max_trades: int = 100_000  # a gap wider than this many ids is reported unfilled, not fetched
    memory_sample_interval: float = 30.0  # seconds between RSS samples (leak score window: 120 samples)
    debug_leak_mb_per_min: float = 0.0  # test-only fault: `k2 stream` retains this many MiB per minute
    consumer_instance_id: str = ""  # static group member id; empty: <group>-<host>-<free slot>
    consumer_session_timeout: float = 10.0  # seconds before a dead consumer's partitions move to another member
    snapshot_expire_step: int = 20  # a consumer expires snapshots once per this many of its commits
    sequence_reset_quiet_seconds: float = 60.0  # a sequence far below the last one after this quiet is a RESET
    breaker_failure_threshold: int = 3  # consecutive failed Iceberg writes that open the breaker
    breaker_reset_timeout: float = 2.0  # seconds the breaker stays open before a trial write (doubles, max 30)
    consumer_decode_workers: int = -1  # decode processes; -1: 2 for batches of 5,000+ on 2+ cores, else 0
    consumer_startup_timeout: float = 30.0  # seconds `k2 consume` retries an unreachable service at start
    consumer_dedup: bool = True  # `k2 consume` writes each (exchange, symbol, trade_id) once
    consumer_decoder: str = "auto"  # auto | native | python: the compiled v2 decoder, or fastavro

    @property
    def resolved_data_dir(self) -> Path:
        """Where k2 keeps its lake and state when no explicit locations are set."""
        return self.data_dir if str(self.data_dir) not in ("", ".") else self.home / "data"

    @property
    def catalog_uri(self) -> str:
        """The SQL catalog URI in force."""
        return self.iceberg_catalog_uri or f"sqlite:///{self.resolved_data_dir / 'catalog.db'}"

    @property
    def warehouse(self) -> str:
        """The warehouse location in force."""
        return self.iceberg_warehouse or f"file://{self.resolved_data_dir / 'warehouse'}"

    @property
    def dlq_path(self) -> Path:
        """The dead-letter directory in force."""
        return self.dlq_dir if str(self.dlq_dir) not in ("", ".") else self.resolved_data_dir / "dlq"

    def threshold(self, name: str, default: float) -> float:
        """A validation threshold from k2.toml's [thresholds] table, or its default."""
        return float(self.thresholds.get(name, default))

    def exchange(self, name: str) -> ExchangeSettings:
        """The settings of a registered exchange; an unknown name is a ConfigError naming the known ones."""
        from k2cli.exchanges import registry

        registry.get(name)
        return self.exchanges[name]

    def __getattr__(self, name: str) -> object:
        """A per-exchange setting by its flat name (`<exchange>_<key>`, the K2_ variable's spelling)."""
        exchanges = self.__dict__.get("exchanges")  # absent while unpickling
        flat = exchange_setting_names().get(name) if exchanges is not None and not name.startswith("_") else None
        if exchanges is None or flat is None or flat[0] not in exchanges:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(exchanges[flat[0]], flat[1])

    def exchange_url(self, exchange: str) -> str:
        """The primary WebSocket URL of an exchange."""
        return self.exchange(exchange).url

    def exchange_topic(self, exchange: str) -> str:
        """The Kafka topic of an exchange."""
        return self.exchange(exchange).topic


def env_name(name: str) -> str:
    """The environment variable that sets a field."""
    return f"K2_{name.upper()}"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "exchanges"}
_HINTS = typing.get_type_hints(Settings)
_EXCHANGE_HINTS = typing.get_type_hints(ExchangeSettings)


def exchange_setting_names() -> dict[str, tuple[str, str]]:
    """The flat name of every per-exchange setting (`<name>_<key>`, as env K2_<NAME>_<KEY>) -> (name, key)."""
    from k2cli.exchanges import registry

    return {f"{d.name}_{key}": (d.name, key) for d in registry.all() for key in exchange_keys(d)}


def setting_names() -> list[str]:
    """The flat name of every setting in reference order (each exchange's settings where `exchanges` stands)."""
    flat = list(exchange_setting_names())
    return [n for f in dataclasses.fields(Settings) for n in (flat if f.name == "exchanges" else [f.name])]


def _hint(name: str) -> object:
    """The type of a setting by its flat name."""
    per_exchange = exchange_setting_names().get(name)
    return _EXCHANGE_HINTS[per_exchange[1]] if per_exchange else _HINTS[name]


def _coerce(name: str, raw: object, source: str) -> object:
    """Turn a raw value from toml or env into the field's type, or say which setting is wrong."""
    hint = _hint(name)
    origin = typing.get_origin(hint)
    where = env_name(name) if source == "env" else f"{name} in {source}"
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        if hint is int:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError(f"expected a whole number, got {raw!r}")
            return int(raw)
        if hint is float:
            if not isinstance(raw, int | float | str):
                raise ValueError(f"expected a number, got {raw!r}")
            return float(raw)
        if hint is Path:
            return Path(str(raw)).expanduser()
        if origin is Literal:
            choices = typing.get_args(hint)
            match = [c for c in choices if str(c).upper() == str(raw).strip().upper()]
            if not match:
                raise ValueError(f"expected one of {', '.join(str(c) for c in choices if c)}, got {raw!r}")
            return match[0]
        if origin is tuple:
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
        if origin is dict:
            if isinstance(raw, str):  # env: name=value,name=value
                pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
                if any(len(p) != 2 for p in pairs):
                    raise ValueError(f"expected name=value[,name=value], got {raw!r}")
                raw = {k.strip(): v.strip() for k, v in pairs}
            if not isinstance(raw, dict):
                raise ValueError("expected a table")
            if typing.get_args(hint)[1] is str:  # librdkafka properties: TOML's true/1 as librdkafka spells them
                return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in raw.items()}
            return {str(k): float(v) for k, v in raw.items()}
        if hint is str or isinstance(hint, types.UnionType):
            return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}", setting=env_name(name)) from None
    return raw


def _read_toml(path: Path) -> dict[str, object]:
    """Flatten k2.toml: top-level keys, and `[section] key` as `section_key`; [thresholds] stays a table."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", setting="K2_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", setting="K2_CONFIG") from None
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "thresholds":
            for sub, subvalue in value.items():
                if key == "kafka" and "_" not in sub:  # librdkafka's names have dots, never underscores
                    flat.setdefault("kafka_properties", {})[sub] = subvalue  # type: ignore[index]
                else:
                    flat[f"{key}_{sub}"] = subvalue
        else:
            flat[key] = value
    known = _FIELDS.keys() | exchange_setting_names().keys()
    unknown = sorted(k for k in flat if k not in known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}", setting=unknown[0])
    return flat


_config_flag: str | None = None  # the root --config flag, when given


def set_config_flag(path: str) -> None:
    """The root `--config FILE`: this process reads it, and so do its children (through K2_CONFIG)."""
    global _config_flag
    _config_flag = path
    os.environ["K2_CONFIG"] = path


def _config_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get("K2_CONFIG"):
        return Path(os.environ["K2_CONFIG"])
    local = Path("k2.toml")
    return local if local.is_file() else None


Source = typing.Literal["default", "k2.toml", "env", "flag"]


def load_settings(config_file: str | None = None, **overrides: object) -> Settings:
    """Build the settings from defaults, k2.toml, K2_* variables and flags (None flags are ignored)."""
    return load_settings_with_sources(config_file, **overrides)[0]


def load_settings_with_sources(config_file: str | None = None,
                               **overrides: object) -> tuple[Settings, dict[str, Source]]:
    """load_settings, and where each setting given by name came from (a name absent: its default)."""
    redaction.register_settings((k, v) for k, v in os.environ.items() if k.startswith("K2_"))  # before any error
    values: dict[str, object] = {}
    sources: dict[str, Source] = {}
    per_exchange = exchange_setting_names()
    config_file = config_file or _config_flag
    path = _config_path(config_file)
    if path is not None:
        for key, raw in _read_toml(path).items():
            values[key] = _coerce(key, raw, str(path))
            sources[key] = "k2.toml"
        values["config_file"] = str(path)
        sources["config_file"] = "flag" if config_file else "env" if os.environ.get("K2_CONFIG") else "default"
    for name in (*_FIELDS, *per_exchange):
        if name in ("config_file",):
            continue
        raw_env = os.environ.get(env_name(name))
        if raw_env is not None and raw_env != "":
            value = _coerce(name, raw_env, "env")
            if isinstance(value, dict):  # K2_THRESHOLDS adds to (and overrides) k2.toml's [thresholds]
                value = {**values.get(name, {}), **value}  # type: ignore[dict-item]
            values[name] = value
            sources[name] = "env"
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in _FIELDS and name not in per_exchange:
            raise ConfigError(f"unknown setting {name!r}", setting=name)
        hint = _hint(name)
        already = isinstance(value, hint) if isinstance(hint, type) else False
        values[name] = value if already else _coerce(name, value, "flags")
        sources[name] = "flag"
    exchanges = {}
    for ex, defaults in _exchange_defaults().items():
        given: dict[str, Any] = {key: values.pop(f"{ex}_{key}") for key in EXCHANGE_KEYS if f"{ex}_{key}" in values}
        exchanges[ex] = dataclasses.replace(defaults, **given)
    settings = Settings(exchanges=exchanges, **values)  # type: ignore[arg-type]
    redaction.register_settings(settings_items(settings))
    validate(settings)
    return settings, sources


def settings_items(settings: Settings) -> list[tuple[str, object]]:
    """Every setting by its flat name with its value, in reference order."""
    return [(name, getattr(settings, name)) for name in setting_names()]


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(
            f"{env_name(name)}={value!r} is not a {'/'.join(s + '://' for s in schemes)} URL",
            setting=env_name(name),
        )


def _check_registry(s: Settings) -> None:
    """The registry URL (printed without its user-info) and the form of its basic-auth credential."""
    from k2cli.kafka.registry_access import split_userinfo

    url, userinfo = split_userinfo(s.schema_registry_url)
    if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
        raise ConfigError(f"K2_SCHEMA_REGISTRY_URL={url!r} is not a http:// or https:// URL",
                          setting="K2_SCHEMA_REGISTRY_URL")
    for where, value in (("K2_SCHEMA_REGISTRY_BASIC_AUTH", s.schema_registry_basic_auth),
                         ("the user-info of K2_SCHEMA_REGISTRY_URL", userinfo)):
        if value and ":" not in value:
            raise ConfigError(f"{where} must be user:password", setting="K2_SCHEMA_REGISTRY_BASIC_AUTH")


# namespace.table (a namespace may have levels): no empty part, no whitespace
_TABLE_NAME = re.compile(r"[^.\s]+(\.[^.\s]+)+")


def validate(s: Settings) -> None:
    """Reject values that cannot work, naming the setting."""
    servers = [part.strip() for part in s.kafka_bootstrap_servers.split(",") if part.strip()]
    if not servers or any(":" not in part or not part.rsplit(":", 1)[1].isdigit() for part in servers):
        raise ConfigError(
            f"K2_KAFKA_BOOTSTRAP_SERVERS={s.kafka_bootstrap_servers!r} must be host:port[,host:port]",
            setting="K2_KAFKA_BOOTSTRAP_SERVERS",
        )
    _check_registry(s)
    _check_url("prometheus_url", s.prometheus_url, ("http", "https"))
    for ex, es in s.exchanges.items():
        _check_url(f"{ex}_url", es.url, ("ws", "wss"))
        for url in es.failover_urls:
            _check_url(f"{ex}_failover_urls", url, ("ws", "wss"))
        if es.rest_url:
            _check_url(f"{ex}_rest_url", es.rest_url, ("http", "https"))
    if not _TABLE_NAME.fullmatch(s.table):
        raise ConfigError(f"table name {s.table!r} (--table or K2_TABLE) must be namespace.table, e.g. {TRADES_TABLE}",
                          setting="K2_TABLE")
    if s.iceberg_catalog_uri and not s.iceberg_catalog_uri.startswith(("sqlite:", "postgresql", "http://",
                                                                       "https://")):
        raise ConfigError(
            f"K2_ICEBERG_CATALOG_URI={s.iceberg_catalog_uri!r} must be a sqlite:///, postgresql:// or "
            "http(s):// (REST catalog) URI",
            setting="K2_ICEBERG_CATALOG_URI",
        )
    positive = ("ping_interval", "pong_timeout", "idle_timeout", "rotation_interval", "backoff_initial",
                "backoff_max", "serializer_cache_max_size", "batch_size", "flush_interval",
                "producer_buffer_max_messages", "snapshots_to_keep", "backfill_max_trades")
    for name in positive:
        if getattr(s, name) <= 0:
            raise ConfigError(f"{env_name(name)} must be greater than 0, got {getattr(s, name)}",
                              setting=env_name(name))
    ports = {**{f"{ex}_metrics_port": es.metrics_port for ex, es in s.exchanges.items()},
             "consumer_metrics_port": s.consumer_metrics_port}
    for name, port in ports.items():
        if not 0 <= port <= 65535:
            raise ConfigError(f"{env_name(name)} must be a port 0..65535", setting=env_name(name))
    for name in ("stream_flush_timeout", "memory_sample_interval"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{env_name(name)} must be greater than 0, got {getattr(s, name)}",
                              setting=env_name(name))
    if s.debug_leak_mb_per_min < 0:
        raise ConfigError("K2_DEBUG_LEAK_MB_PER_MIN must be 0 or more", setting="K2_DEBUG_LEAK_MB_PER_MIN")


def ensure_writable_dir(path: Path, setting: str) -> Path:
    """Create a directory if needed and prove it is writable, or raise naming the setting."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a name of this process's own: streams and consumers starting together share one dead-letter directory
        probe = path / f".k2-write-probe-{os.getpid()}-{os.urandom(4).hex()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{setting}={str(path)!r} is not writable: {exc.strerror}", setting=setting) from None
    return path
