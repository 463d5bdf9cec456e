"""SSL context creation and certificate validation of the exchange connection (build_ssl_context).

The handshakes run in memory (ssl.MemoryBIO on both ends): no socket, no server process.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k2cli.errors import ConfigError
from k2cli.exchanges.session import build_ssl_context


def _self_signed(tmp: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for `host` and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _handshake(client_ctx: ssl.SSLContext, cert: Path, key: Path, host: str = "localhost") -> None:
    """Run a TLS handshake between the client context and a server presenting `cert`, all in memory."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_ssl_context_verifies_by_default():
    ctx = build_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] > 0  # certifi's roots are loaded


def test_ssl_context_without_verification_checks_nothing():
    ctx = build_ssl_context(verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_certificate_validation_refuses_a_self_signed_certificate(tmp_path):
    cert, key = _self_signed(tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(build_ssl_context(), cert, key)


def test_certificate_validation_accepts_it_from_the_ca_bundle(tmp_path):
    cert, key = _self_signed(tmp_path)
    _handshake(build_ssl_context(ca_bundle=str(cert)), cert, key)


def test_certificate_validation_checks_the_host_name(tmp_path):
    cert, key = _self_signed(tmp_path, host="localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname"):
        _handshake(build_ssl_context(ca_bundle=str(cert)), cert, key, host="exchange.example")


def test_ssl_context_without_verification_accepts_anything(tmp_path):
    cert, key = _self_signed(tmp_path)
    _handshake(build_ssl_context(verify=False), cert, key, host="exchange.example")


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_ssl_context_bad_ca_bundle_names_the_setting(tmp_path, content):
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        build_ssl_context(ca_bundle=str(path))
    assert err.value.setting == "K2_CA_BUNDLE" and str(path) in str(err.value)
