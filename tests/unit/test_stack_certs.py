"""The stack's CA signs a server certificate for localhost/127.0.0.1, made once and kept."""

from __future__ import annotations

import subprocess
from pathlib import Path

from k2cli.stack.certs import ensure_certs
from k2cli.stack.paths import StackPaths


def test_server_certificate_is_signed_by_the_stack_ca_and_kept(tmp_path: Path) -> None:
    certs = ensure_certs(StackPaths.for_home(tmp_path))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(certs.ca), str(certs.cert)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(certs.cert)],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    before = certs.cert.read_bytes()
    assert ensure_certs(StackPaths.for_home(tmp_path)).cert.read_bytes() == before


def test_a_missing_ca_makes_a_new_server_certificate(tmp_path: Path) -> None:
    certs = ensure_certs(StackPaths.for_home(tmp_path))
    certs.ca.unlink()
    renewed = ensure_certs(StackPaths.for_home(tmp_path))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(renewed.ca), str(renewed.cert)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
