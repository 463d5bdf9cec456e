"""One class per stack service: how to install, configure, start, probe and stop it.

Order matters (see ORDER): PostgreSQL first (it also stores the registry's schemas), then Kafka,
Apicurio Registry, the Confluent-API front (nginx) and Prometheus."""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

from k2cli.errors import ServiceUnavailable, first_line
from k2cli.stack import install, proc
from k2cli.stack.certs import stack_certs
from k2cli.stack.config import StackConfig, stream_scrape_configs
from k2cli.stack.errors import InstallError, StackConfigError, StackError
from k2cli.stack.health import Health, http_get, http_json, port_open
from k2cli.stack.install import Apicurio as ApicurioDistribution
from k2cli.stack.paths import StackPaths, find_deploy_dir
from k2cli.stack.progress import Progress, quiet
from k2cli.stack.templates import packaged, render, render_file, write_if_changed

# log_level 0: no librdkafka log lines on stderr while the broker is still starting.
_ADMIN_CONFIG = {"log_level": 0, "socket.connection.setup.timeout.ms": 3000}
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


class Service:
    """A process `k2 stack up` starts and `k2 stack down` stops."""

    name = "service"
    start_timeout = 120.0
    stop_signal = signal.SIGTERM
    stop_timeout = 30.0

    def __init__(self, cfg: StackConfig, paths: StackPaths) -> None:
        self.cfg = cfg
        self.paths = paths

    # -- layout
    @property
    def dir(self) -> Path:
        return self.paths.service_dir(self.name)

    @property
    def log_file(self) -> Path:
        return self.paths.log_file(self.name)

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file(self.name)

    # -- description
    def ports(self) -> list[int]:
        """Every port the service binds (all on 127.0.0.1)."""
        return []

    def listen(self) -> str:
        """Where clients reach it."""
        return ""

    # -- lifecycle hooks
    def install(self, progress: Progress = quiet) -> None:
        """Make sure the binaries exist (downloads go to the cache)."""

    def prepare(self, progress: Progress = quiet) -> None:
        """Write the configuration and initialise the data directory."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def user(self) -> str | None:
        return None

    def ready(self) -> Health:
        """The probe `up` waits on after starting the process."""
        return self.health()

    def health(self) -> Health:
        raise NotImplementedError

    def after_start(self, progress: Progress = quiet) -> None:
        """Idempotent setup once the service answers (topics, databases): runs on every `up`."""

    def refresh(self, progress: Progress = quiet) -> None:
        """Bring a running service's configuration up to date without a restart, if it supports that."""

    # -- processes
    def pid(self) -> int | None:
        return proc.owned_pid(self.pid_file)

    def start(self) -> proc.PidRecord:
        return proc.spawn(self.name, self.command(), self.log_file, self.pid_file, env=self.env(), cwd=self.dir,
                          user=self.user())

    def stop(self) -> str:
        return proc.stop(self.pid_file, self.stop_signal, self.stop_timeout)


# ------------------------------------------------------------------------------------------ PostgreSQL
def _can_traverse(path: Path, user: str) -> bool:
    """Whether `user` may reach `path`: every existing ancestor must be searchable by it."""
    pw = pwd.getpwnam(user)
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for part in [path, *path.parents]:
        try:
            st = part.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == pw.pw_uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return False
    return True


class Postgres(Service):
    """Our own PostgreSQL cluster (never the system one): the Iceberg SQL catalog and the registry's store."""

    name = "postgres"
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, exit cleanly

    def ports(self) -> list[int]:
        return [self.cfg.postgres_port]

    def listen(self) -> str:
        c = self.cfg
        return f"localhost:{c.postgres_port} (database {c.postgres_database}, user {c.postgres_user})"

    def user(self) -> str | None:
        # PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user.
        return "postgres" if os.geteuid() == 0 else None

    @property
    def root(self) -> Path:
        """The cluster's directory. Inside K2_HOME, unless the postgres user cannot reach K2_HOME (e.g.
        /root is 0700): then /var/lib/k2/postgres-<hash of K2_HOME>, linked from K2_HOME/stack/postgres."""
        inside = self.dir
        user = self.user()
        if user is None or inside.is_symlink():
            return inside.resolve() if inside.is_symlink() else inside
        if _can_traverse(self.paths.home, user):
            return inside
        digest = hashlib.sha1(str(self.paths.home).encode()).hexdigest()[:12]
        return Path("/var/lib/k2") / f"postgres-{digest}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def _bin(self) -> Path:
        return install.required(install.find_postgres_bin(), "PostgreSQL server binaries", "postgresql")

    def install(self, progress: Progress = quiet) -> None:
        install.apt_ensure(install.find_postgres_bin, "postgresql", progress)

    def prepare(self, progress: Progress = quiet) -> None:
        root = self.root
        user = self.user()
        root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if user is not None:
            pw = pwd.getpwnam(user)
            for path in (root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
                path.chmod(0o700)
            if root != self.dir and not self.dir.exists():
                self.dir.parent.mkdir(parents=True, exist_ok=True)
                self.dir.symlink_to(root)
        if (self.data_dir / "PG_VERSION").is_file():
            self._drop_stale_lock()
            return
        progress(f"initialising a PostgreSQL cluster in {self.data_dir}")
        cmd = [str(self._bin() / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
               "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions"]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            kwargs: dict = {"user": user, "group": user, "extra_groups": []} if user else {}
            result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=str(root), **kwargs)
        if result.returncode != 0:
            raise StackError(f"postgres: initdb failed (exit {result.returncode}); see its log: {self.log_file}")

    def _drop_stale_lock(self) -> None:
        """After a crash, postmaster.pid may name a pid now used by another program, which makes the
        server refuse to start: remove the file when no postgres process has that pid."""
        lock = self.data_dir / "postmaster.pid"
        try:
            pid = int(lock.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip() if proc.is_running(pid) else ""
        except (OSError, ValueError, IndexError):
            return
        if comm not in ("postgres", "postmaster"):
            lock.unlink(missing_ok=True)

    def command(self) -> list[str]:
        c = self.cfg
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": c.postgres_port,
            "unix_socket_directories": self.socket_dir,
            "shared_buffers": "64MB",
            "max_connections": 100,
            "log_destination": "stderr",
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] ",
        }
        cmd = [str(self._bin() / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _connect_admin(self):
        import psycopg2

        return psycopg2.connect(host=str(self.socket_dir), port=self.cfg.postgres_port, user="postgres",
                                dbname="postgres", connect_timeout=3)

    def ready(self) -> Health:
        try:
            conn = self._connect_admin()
        except Exception as exc:
            return Health(False, first_line(exc))
        conn.close()
        return Health(True, "accepting connections")

    def after_start(self, progress: Progress = quiet) -> None:
        from psycopg2 import sql

        c = self.cfg
        conn = self._connect_admin()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (c.postgres_user,))
                if cur.fetchone() is None:
                    progress(f"creating PostgreSQL role {c.postgres_user}")
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(c.postgres_user)),
                                (c.postgres_password,))
                for database in (c.postgres_database, c.registry_database):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                    if cur.fetchone() is None:
                        progress(f"creating PostgreSQL database {database}")
                        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(database), sql.Identifier(c.postgres_user)))
        finally:
            conn.close()

    def health(self) -> Health:
        import psycopg2

        c = self.cfg
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=c.postgres_port, user=c.postgres_user,
                                    password=c.postgres_password, dbname=c.postgres_database, connect_timeout=3)
        except Exception as exc:
            return Health(False, first_line(exc))
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                version = cur.fetchone()[0]
        finally:
            conn.close()
        return Health(True, f"PostgreSQL {version}, databases {c.postgres_database}, {c.registry_database}")


# ------------------------------------------------------------------------------------------ Kafka
def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as kafka-storage random-uuid)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class Kafka(Service):
    """Apache Kafka in KRaft mode: one process that is both broker and controller."""

    name = "kafka"
    start_timeout = 120.0
    stop_timeout = 60.0  # a clean shutdown flushes logs; worth waiting for

    def ports(self) -> list[int]:
        return [self.cfg.kafka_port, self.cfg.kafka_controller_port,
                *(port for port, _ in self.cfg.kafka_proxied_listeners), *self._tls_ports()]

    def _tls_ports(self) -> list[int]:
        return [port for port in (self.cfg.kafka_sasl_port, self.cfg.kafka_mtls_port) if port]

    def listen(self) -> str:
        c = self.cfg
        where = [f"localhost:{c.kafka_port}"]
        if c.kafka_sasl_port:
            where.append(f"SASL_SSL localhost:{c.kafka_sasl_port} (SCRAM-SHA-256/512 user {c.kafka_scram_user})")
        if c.kafka_mtls_port:
            where.append(f"SSL with client certificate localhost:{c.kafka_mtls_port}")
        if len(where) > 1:
            where.append(f"CA {stack_certs(self.paths).ca}")
        return "; ".join(where)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def _java(self) -> str:
        jdk = install.find_java(install.KAFKA_JAVA)
        if jdk is None:
            raise InstallError(f"kafka needs Java {install.KAFKA_JAVA}+; none found (apt-get install "
                               "openjdk-17-jre-headless)")
        return str(jdk.java)

    def install(self, progress: Progress = quiet) -> None:
        cached = (install.kafka_libs(self.paths).parent / ".complete").is_file()
        missing = [] if cached or install.find_mvn() else ["maven"]
        if install.find_java(install.KAFKA_JAVA) is None:
            missing.append("openjdk-17-jre-headless")
        if missing:
            install.apt_install(missing, progress)
        install.ensure_kafka(self.paths, progress)

    def prepare(self, progress: Progress = quiet) -> None:
        self._write_config()
        self._format(progress)

    def _write_config(self) -> bool:
        """Write server.properties (and the TLS keystore); True when the properties changed."""
        c = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        values = {"kafka_version": install.KAFKA_VERSION, "kafka_port": c.kafka_port,
                  "controller_port": c.kafka_controller_port, "data_dir": self.data_dir,
                  "topic_partitions": c.topic_partitions, "log_file": self.log_file, **self._proxied_values(),
                  **self._tls_values()}
        if self._tls_ports():
            self._write_keystore()
        changed = write_if_changed(self.dir / "server.properties",
                                   render_file(packaged("kafka", "server.properties"), values))
        write_if_changed(self.dir / "log4j2.xml", render_file(packaged("kafka", "log4j2.xml"), values))
        return changed

    def _format(self, progress: Progress) -> None:
        """Format the KRaft storage once (it persists across restarts)."""
        if (self.data_dir / "meta.properties").is_file():
            return
        progress(f"formatting Kafka storage in {self.data_dir}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [self._java(), "-Xmx256m", *self._log_opts(), "-cp", self._classpath(), "kafka.tools.StorageTool",
               "format", "--standalone", "--ignore-formatted", f"--cluster-id={_cluster_id()}",
               "-c", str(self.dir / "server.properties")]
        with open(self.log_file, "ab") as log:
            result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise StackError(f"kafka: formatting storage failed (exit {result.returncode}); see its log: "
                             f"{self.log_file}")

    def _proxied_values(self) -> dict[str, str]:
        """The template's extra listeners PROXIED1.. (listen port, advertised as the proxy's port)."""
        pairs = list(enumerate(self.cfg.kafka_proxied_listeners, 1))
        return {"proxied_listeners": "".join(f",PROXIED{i}://127.0.0.1:{port}" for i, (port, _) in pairs),
                "proxied_advertised": "".join(f",PROXIED{i}://127.0.0.1:{adv}" for i, (_, adv) in pairs),
                "proxied_protocols": "".join(f",PROXIED{i}:PLAINTEXT" for i, _ in pairs)}

    @property
    def _keystore(self) -> Path:
        return self.dir / "tls" / "keystore.pem"

    def _write_keystore(self) -> None:
        """The TLS listeners' PEM keystore: the stack's server key and certificate in one file."""
        from k2cli.stack.certs import ensure_certs

        certs = ensure_certs(self.paths)
        write_if_changed(self._keystore, certs.key.read_text() + certs.cert.read_text(), mode=0o600)

    def _tls_values(self) -> dict[str, str]:
        """The template's TLS listeners: SASL_SSL (SCRAM users are added after start) and SSL requiring a client
        certificate (mTLS), each with the stack's certificate; empty without their ports."""
        c, listeners, protocols, lines = self.cfg, [], [], []
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        if c.kafka_sasl_port:
            listeners.append(f",SASL_SSL://127.0.0.1:{c.kafka_sasl_port}")
            protocols.append(",SASL_SSL:SASL_SSL")
            lines += ["# SASL_SSL listener: SCRAM users (k2 stack up adds them), TLS from the stack's CA",
                      "listener.name.sasl_ssl.sasl.enabled.mechanisms=" + ",".join(SCRAM_MECHANISMS),
                      *(f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config={login}" for m in SCRAM_MECHANISMS),
                      "listener.name.sasl_ssl.ssl.keystore.type=PEM",
                      f"listener.name.sasl_ssl.ssl.keystore.location={self._keystore}"]
        if c.kafka_mtls_port:
            listeners.append(f",MTLS://127.0.0.1:{c.kafka_mtls_port}")
            protocols.append(",MTLS:SSL")
            lines += ["# SSL listener requiring a client certificate signed by the stack's CA (mTLS)",
                      "listener.name.mtls.ssl.client.auth=required",
                      "listener.name.mtls.ssl.keystore.type=PEM",
                      f"listener.name.mtls.ssl.keystore.location={self._keystore}",
                      "listener.name.mtls.ssl.truststore.type=PEM",
                      f"listener.name.mtls.ssl.truststore.location={stack_certs(self.paths).ca}"]
        return {"tls_listeners": "".join(listeners), "tls_protocols": "".join(protocols),
                "tls_settings": "\n".join(lines)}

    def _add_scram_users(self, progress: Progress) -> None:
        """Create or update the stack's SCRAM user for each mechanism (an idempotent upsert)."""
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        c = self.cfg
        upserts = [UserScramCredentialUpsertion(c.kafka_scram_user, ScramCredentialInfo(
            getattr(ScramMechanism, m.replace("-", "_")), 8192), c.kafka_scram_password.encode())
            for m in SCRAM_MECHANISMS]
        client = self._admin()  # kept alive until its futures resolve
        for upsert in upserts:  # one request per mechanism: a request may not alter one user twice
            try:
                for future in client.alter_user_scram_credentials([upsert], request_timeout=30).values():
                    future.result(timeout=30)
            except Exception as exc:
                raise StackError(f"kafka: adding SCRAM user {c.kafka_scram_user} failed: {first_line(exc)}") from None

    def refresh(self, progress: Progress = quiet) -> None:
        """A broker running an older server.properties (e.g. without the SASL_SSL listener) is restarted."""
        if not self._write_config():
            return
        progress("kafka configuration changed: restarting the broker")
        self.stop()
        record = self.start()
        from k2cli.stack.health import wait_for

        health = wait_for(self.ready, self.start_timeout, alive=lambda: proc.is_running(record.pid))
        if not health.ok:
            raise StackError(f"kafka: did not come back after the configuration change: {health.detail}; "
                             f"see its log: {self.log_file}")
        self.after_start(progress)

    def _classpath(self) -> str:
        return str(install.kafka_libs(self.paths) / "*")

    def _log_opts(self) -> list[str]:
        return [f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}", f"-Dkafka.logs.dir={self.paths.logs}"]

    def command(self) -> list[str]:
        heap = self.cfg.kafka_heap
        return [self._java(), f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true", *self._log_opts(), "-cp", self._classpath(), "kafka.Kafka",
                str(self.dir / "server.properties")]

    def _client_config(self) -> dict[str, Any]:
        """The stack's own admin connection: its broker's PLAINTEXT listener, whatever k2's Kafka settings say."""
        return {"bootstrap.servers": f"127.0.0.1:{self.cfg.kafka_port}", **_ADMIN_CONFIG}

    def _admin(self) -> Any:  # -> confluent_kafka.admin.AdminClient
        from k2cli.kafka import admin

        return admin.client(self._client_config())

    def _metadata(self) -> Any:  # -> ClusterMetadata, or the Health that says why there is none
        if not port_open(self.cfg.kafka_port):
            return Health(False, f"port {self.cfg.kafka_port} not open")
        try:
            return self._admin().list_topics(timeout=5)
        except Exception as exc:
            return Health(False, f"metadata request failed: {exc}")

    def ready(self) -> Health:
        metadata = self._metadata()
        if isinstance(metadata, Health):
            return metadata
        if not metadata.brokers:
            return Health(False, "no broker in metadata")
        return Health(True, f"{len(metadata.brokers)} broker")

    def after_start(self, progress: Progress = quiet) -> None:
        from k2cli.kafka import admin

        if self.cfg.kafka_sasl_port:
            self._add_scram_users(progress)
        existing = set(self._admin().list_topics(timeout=10).topics)
        wanted = [t for t in self.cfg.topics if t not in existing]
        if not wanted:
            return
        progress(f"creating topics {', '.join(wanted)} ({self.cfg.topic_partitions} partitions)")
        try:
            admin.create_topics(self._client_config(), wanted, self.cfg.topic_partitions, 60)
        except ServiceUnavailable as exc:
            raise StackError(f"kafka: {exc.args[0]}") from None

    def health(self) -> Health:
        metadata = self._metadata()
        if isinstance(metadata, Health):
            return metadata
        missing = [t for t in self.cfg.topics if t not in metadata.topics]
        if missing:
            return Health(False, f"topic {missing[0]} missing (run `k2 stack up`)")
        closed = [port for port in self._tls_ports() if not port_open(port)]
        if closed:
            return Health(False, f"TLS listener 127.0.0.1:{closed[0]} not open: the broker runs an older "
                                 "configuration (run `k2 stack up` again to restart it)")
        parts = {t: len(metadata.topics[t].partitions) for t in self.cfg.topics}
        return Health(True, f"Kafka {install.KAFKA_VERSION} KRaft, {len(metadata.brokers)} broker, "
                            + ", ".join(f"{t} ({n} partitions)" for t, n in parts.items()))


# ------------------------------------------------------------------------------------------ Apicurio
class Apicurio(Service):
    """Apicurio Registry: stores schemas in PostgreSQL, serves the Confluent API at /apis/ccompat/v7."""

    name = "apicurio"
    start_timeout = 180.0

    def ports(self) -> list[int]:
        return [self.cfg.apicurio_port, self.cfg.apicurio_management_port]

    def listen(self) -> str:
        return f"http://127.0.0.1:{self.cfg.apicurio_port}/apis/ccompat/v7"

    def install(self, progress: Progress = quiet) -> None:
        version, _ = install.apicurio_choice()
        cached = (self.paths.cache / f"apicurio-registry-{version}" / ".complete").is_file()
        if not cached and install.find_mvn() is None:
            install.apt_install(["maven"], progress)
        self._dist = install.ensure_apicurio(self.paths, progress)

    def _distribution(self) -> ApicurioDistribution:
        dist = getattr(self, "_dist", None)
        if dist is None:
            dist = self._dist = install.ensure_apicurio(self.paths)
        return dist

    def prepare(self, progress: Progress = quiet) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        c = self.cfg
        dist = self._distribution()
        props = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": c.apicurio_port,
            # The management interface (health, metrics) is enabled at build time; keep it on loopback
            # (its default is 0.0.0.0:9000).
            "quarkus.management.host": "127.0.0.1",
            "quarkus.management.port": c.apicurio_management_port,
            "quarkus.otel.sdk.disabled": "true",
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "postgresql",
            "apicurio.datasource.url": f"jdbc:postgresql://127.0.0.1:{c.postgres_port}/{c.registry_database}",
            "apicurio.datasource.username": c.postgres_user,
            "apicurio.datasource.jdbc.initial-size": 2,
            "apicurio.datasource.jdbc.min-size": 2,
            "apicurio.datasource.jdbc.max-size": 20,
            # Confluent's default compatibility level, for subjects without their own.
            "apicurio.rules.global.compatibility": "BACKWARD",
            "apicurio.storage.snapshot.location": self.dir,
        }
        return [str(dist.jdk.java), f"-Xmx{c.apicurio_heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
                *(f"-D{k}={v}" for k, v in props.items()), "-jar", str(dist.jar)]

    def env(self) -> dict[str, str]:
        # The password goes through the environment, not the command line (`ps` shows that).
        return dict(os.environ, APICURIO_DATASOURCE_PASSWORD=self.cfg.postgres_password)

    def health(self) -> Health:
        status, body = http_get(f"{self.listen()}/subjects", timeout=5)
        if status != 200:
            return Health(False, f"GET /apis/ccompat/v7/subjects: {'no answer' if status == 0 else status}")
        return Health(True, f"Apicurio Registry {install.apicurio_choice()[0]}")


class RegistryFront(Service):
    """The Schema Registry endpoint clients use: nginx maps the Confluent REST API at the root of
    K2_SCHEMA_REGISTRY_URL onto Apicurio's /apis/ccompat/v7, and serves it again over TLS with basic auth (or the
    stack's bearer token) on the registry TLS port."""

    name = "schema-registry"
    start_timeout = 30.0
    stop_signal = signal.SIGQUIT  # graceful: finish in-flight requests

    def ports(self) -> list[int]:
        return [self.cfg.registry_port, self.cfg.registry_tls_port]

    def listen(self) -> str:
        return (f"http://localhost:{self.cfg.registry_port}, https://localhost:{self.cfg.registry_tls_port} "
                f"(basic auth, user {self.cfg.registry_user})")

    def _nginx(self) -> Path:
        return install.required(install.find_nginx(), "nginx", "nginx")

    def install(self, progress: Progress = quiet) -> None:
        install.apt_ensure(install.find_nginx, "nginx", progress)

    def _write_config(self) -> bool:
        """Render nginx.conf (it holds the credentials: owner-only) and have nginx check it; True when it changed."""
        import re

        from k2cli.stack.certs import ensure_certs

        certs = ensure_certs(self.paths)  # nginx's master process reads the key before dropping privileges
        run_dir = self.dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        c = self.cfg
        basic = base64.b64encode(f"{c.registry_user}:{c.registry_password}".encode()).decode("ascii")
        values = {"registry_port": c.registry_port, "apicurio_port": c.apicurio_port, "run_dir": run_dir,
                  "log_file": self.log_file, "registry_tls_port": c.registry_tls_port, "tls_cert": certs.cert,
                  "tls_key": certs.key, "registry_basic_pattern": re.escape(basic),
                  "registry_token_pattern": re.escape(c.registry_token)}
        conf = self.dir / "nginx.conf"
        changed = write_if_changed(conf, render_file(packaged("nginx", "registry.conf"), values), mode=0o600)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        check = subprocess.run([str(self._nginx()), "-t", "-q", "-p", str(self.dir), "-c", str(conf),
                                "-e", str(self.log_file)], capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"schema-registry: nginx rejected {conf}: {check.stderr.strip()}")
        return changed

    def prepare(self, progress: Progress = quiet) -> None:
        self._write_config()

    def refresh(self, progress: Progress = quiet) -> None:
        pid = self.pid()
        if self._write_config() and pid is not None:
            progress("schema-registry configuration changed: reloading nginx")
            os.kill(pid, signal.SIGHUP)

    def command(self) -> list[str]:
        return [str(self._nginx()), "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.log_file)]

    def ready(self) -> Health:
        return self._plain_health()

    def health(self) -> Health:
        plain = self._plain_health()
        if not plain.ok:
            return plain
        from k2cli.stack.certs import stack_certs

        if not stack_certs(self.paths).ca.is_file():  # a registry this K2_HOME's `k2 stack up` did not set up
            return Health(True, plain.detail + f"; TLS port {self.cfg.registry_tls_port} not checked (no stack CA "
                                               "under this K2_HOME)")
        tls = self._tls_health()
        return Health(tls is None, plain.detail + (f"; TLS port {self.cfg.registry_tls_port}: {tls}" if tls else
                                                   f"; TLS + basic auth on {self.cfg.registry_tls_port}"))

    def _plain_health(self) -> Health:
        base = f"http://127.0.0.1:{self.cfg.registry_port}"
        status, subjects = http_json("GET", f"{base}/subjects", timeout=5)
        if status != 200 or not isinstance(subjects, list):
            return Health(False, f"GET /subjects: {'no answer' if status == 0 else status}")
        status, config = http_json("GET", f"{base}/config", timeout=5)
        level = (config or {}).get("compatibilityLevel", "?") if status == 200 else "?"
        shown = f"{len(subjects)}+" if len(subjects) >= 1000 else str(len(subjects))  # the API's first page
        return Health(True, f"Confluent REST API (Apicurio ccompat v7), {shown} subjects, "
                            f"compatibility {level}")

    def _tls_health(self) -> str | None:
        """Why the TLS port does not serve the API to the stack's user (None when it does)."""
        from k2cli.errors import K2Error
        from k2cli.kafka.registry import RegistryClient
        from k2cli.kafka.registry_access import RegistryAccess
        from k2cli.stack.certs import stack_certs

        c = self.cfg
        access = RegistryAccess.of(f"https://localhost:{c.registry_tls_port}", f"{c.registry_user}:"
                                   f"{c.registry_password}", ca_location=str(stack_certs(self.paths).ca))
        try:
            client = RegistryClient(access, timeout=5)
            try:
                client.check()
            finally:
                client.close()
        except K2Error as exc:
            return str(exc).split(" (setting ")[0]
        return None


# ------------------------------------------------------------------------------------------ Prometheus
class Prometheus(Service):
    """Prometheus with k2's scrape targets and alert rules (deploy/prometheus)."""

    name = "prometheus"
    start_timeout = 60.0

    def ports(self) -> list[int]:
        return [self.cfg.prometheus_port]

    def listen(self) -> str:
        return f"http://localhost:{self.cfg.prometheus_port}"

    def _binaries(self) -> tuple[Path, Path]:
        return install.required(install.find_prometheus(), "prometheus/promtool", "prometheus")

    def install(self, progress: Progress = quiet) -> None:
        install.apt_ensure(install.find_prometheus, "prometheus", progress)

    @property
    def config_file(self) -> Path:
        return self.dir / "prometheus.yml"

    def render_config(self) -> str:
        deploy = find_deploy_dir()
        if deploy is None:
            raise StackConfigError("deploy/prometheus/prometheus.yml.tmpl not found: run k2 from its repository "
                                   "or set K2_DEPLOY_DIR to the repository's deploy directory",
                                   setting="K2_DEPLOY_DIR")
        rules = deploy / "prometheus" / "rules"
        c = self.cfg
        values = {
            "scrape_interval": c.scrape_interval,
            "rule_files": f'  - "{rules}/*.yml"',
            "stream_scrape_configs": stream_scrape_configs(c.stream_metrics_ports),
            "consumer_metrics_port": c.consumer_metrics_port,
            "prometheus_port": c.prometheus_port,
        }
        text = render((deploy / "prometheus" / "prometheus.yml.tmpl").read_text(), values,
                      str(deploy / "prometheus" / "prometheus.yml.tmpl"))
        # The rules' digest makes an edited rule file change the config, so `up` reloads Prometheus.
        digest = hashlib.sha256()
        for rule_file in sorted(rules.glob("*.yml")):
            digest.update(rule_file.name.encode() + b"\0" + rule_file.read_bytes() + b"\0")
        return f"{text.rstrip()}\n# rules digest: {digest.hexdigest()[:16]}\n"

    def _write_checked_config(self) -> bool:
        """Render and check the configuration (and its rules) with promtool; True when it changed."""
        content = self.render_config()
        candidate = self.dir / "prometheus.yml.new"
        candidate.parent.mkdir(parents=True, exist_ok=True)
        candidate.write_text(content)
        _, promtool = self._binaries()
        check = subprocess.run([str(promtool), "check", "config", str(candidate)], capture_output=True, text=True)
        if check.returncode != 0:
            detail = " | ".join((check.stdout + check.stderr).strip().splitlines()[-3:])
            candidate.unlink(missing_ok=True)
            raise StackError(f"prometheus: promtool rejected the configuration or its rules: {detail}")
        candidate.unlink(missing_ok=True)
        return write_if_changed(self.config_file, content)

    def prepare(self, progress: Progress = quiet) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self._write_checked_config()

    def refresh(self, progress: Progress = quiet) -> None:
        if self._write_checked_config():
            progress("prometheus configuration changed: reloading")
            status, _ = http_json("POST", f"http://127.0.0.1:{self.cfg.prometheus_port}/-/reload")
            if status != 200:
                raise StackError(f"prometheus: reloading the configuration failed (HTTP {status}); see its log: "
                                 f"{self.log_file}")

    def command(self) -> list[str]:
        prometheus, _ = self._binaries()
        return [str(prometheus), f"--config.file={self.config_file}", f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.cfg.prometheus_port}", "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=7d", "--log.level=info"]

    def health(self) -> Health:
        base = f"http://127.0.0.1:{self.cfg.prometheus_port}"
        status, _ = http_get(f"{base}/-/ready", timeout=5)
        if status != 200:
            return Health(False, f"GET /-/ready: {'no answer' if status == 0 else status}")
        status, body = http_json("GET", f"{base}/api/v1/rules", timeout=5)
        groups = [g.get("name") for g in ((body or {}).get("data") or {}).get("groups", [])] if status == 200 else []
        return Health(True, f"ready, rule groups: {', '.join(groups) if groups else 'none'}")


ORDER: tuple[type[Service], ...] = (Postgres, Kafka, Apicurio, RegistryFront, Prometheus)


def all_services(cfg: StackConfig, paths: StackPaths, extras: tuple[str, ...] = ()) -> list[Service]:
    """The default services, then the optional ones named in `extras` or already running (k2cli/stack/lake_services)."""
    from k2cli.stack.lake_services import optional_services

    chosen = [cls(cfg, paths) for cls in ORDER]
    for name, cls in optional_services().items():
        svc = cls(cfg, paths)
        if name in extras or svc.pid() is not None:
            chosen.append(svc)
    return chosen


def remove_service_data(service: Service) -> None:
    """Delete a service's configuration and data (used by tests on throwaway K2_HOMEs)."""
    target = service.dir
    if target.is_symlink():
        real = target.resolve()
        target.unlink()
        shutil.rmtree(real, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)
