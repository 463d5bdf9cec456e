"""The local stack's own certificate authority and the one server certificate its TLS listeners share.

`k2 stack up` makes them once under $K2_HOME/stack/tls/ (with the openssl command line, which the install
ensures) and keeps them across restarts, so a client trusting ca.pem keeps working. The server certificate
names localhost and 127.0.0.1; it is renewed when it has less than a day left.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from k2cli.stack.errors import StackError
from k2cli.stack.paths import StackPaths

_DAYS = 825
_SUBJECT_ALT_NAME = "subjectAltName=DNS:localhost,IP:127.0.0.1"


@dataclass(frozen=True)
class StackCerts:
    """Where the stack's CA and server certificate live (PEM files)."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def key(self) -> Path:
        return self.dir / "server.key"


def stack_certs(paths: StackPaths) -> StackCerts:
    """The stack's certificate files (they may not exist yet: see `ensure_certs`)."""
    return StackCerts(paths.home / "stack" / "tls")


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise StackError("openssl is not installed; run scripts/install.sh") from None
    except subprocess.CalledProcessError as exc:
        lines = (exc.stderr or "").strip().splitlines()
        raise StackError(f"openssl {args[0]} failed: {lines[-1] if lines else exc.returncode}") from None


def _valid_for_a_day(cert: Path) -> bool:
    result = subprocess.run(["openssl", "x509", "-checkend", "86400", "-noout", "-in", str(cert)],
                            capture_output=True)
    return result.returncode == 0


def ensure_certs(paths: StackPaths) -> StackCerts:
    """Create the CA and the server certificate if missing or about to expire; return their paths."""
    certs = stack_certs(paths)
    certs.dir.mkdir(parents=True, exist_ok=True)
    if not certs.ca.is_file() or not certs.ca_key.is_file() or not _valid_for_a_day(certs.ca):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(certs.ca_key), "-out", str(certs.ca), "-days", str(_DAYS),
                 "-subj", "/CN=k2 local stack CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        certs.cert.unlink(missing_ok=True)
    if not certs.cert.is_file() or not certs.key.is_file() or not _valid_for_a_day(certs.cert):
        csr = certs.dir / "server.csr"
        ext = certs.dir / "server.ext"
        ext.write_text(f"{_SUBJECT_ALT_NAME.replace('=', ' = ', 1)}\nextendedKeyUsage = serverAuth, clientAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(certs.key), "-out", str(csr), "-subj", "/CN=localhost")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(certs.ca), "-CAkey", str(certs.ca_key),
                 "-CAcreateserial", "-out", str(certs.cert), "-days", str(_DAYS), "-extfile", str(ext))
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    for secret in (certs.ca_key, certs.key):
        secret.chmod(0o640)  # group-readable: nginx's worker user reads the server key through its group
    return certs
