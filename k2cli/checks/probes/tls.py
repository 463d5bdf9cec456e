"""Throw-away TLS material for checks: a private CA and a localhost server certificate it signed (openssl)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from k2cli.checks.probes.proc import StepError


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA to trust, and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise StepError(f"openssl {args[0]} failed: {done.stderr.strip()[-200:]}")


def make_tls(directory: Path) -> TLSFiles:
    """A fresh CA and a certificate for localhost/127.0.0.1 signed by it, valid for two days."""
    if shutil.which("openssl") is None:
        raise StepError("the openssl command is needed to make test certificates and is not installed")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                               "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                               "extendedKeyUsage=serverAuth\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=k2 validate test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return TLSFiles(d / "ca.pem", d / "server.pem", d / "server.key")
