"""Throw-away keys and certificates, generated in the test with ``cryptography`` (no files from outside)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def _pem(key) -> bytes:  # type: ignore[no-untyped-def]
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class SigningKey:
    private_path: Path       # what the suite is given (JWK or PEM)
    jwks: dict               # what the mock registers (public only)
    kid: str
    private_text: str


def rsa_jwk(tmp: Path, kid: str = "kit-rsa-1") -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = json.loads(RSAAlgorithm.to_jwk(key)) | {"kid": kid, "alg": "RS384"}
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "alg": "RS384"}
    path = tmp / "rsa.jwk.json"
    path.write_text(json.dumps(private))
    return SigningKey(path, {"keys": [public]}, kid, path.read_text())


def ec_pem(tmp: Path, kid: str = "kit-ec-1") -> SigningKey:
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(ECAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "alg": "ES384"}
    path = tmp / "ec.pem"
    path.write_bytes(_pem(key))
    return SigningKey(path, {"keys": [public]}, kid, path.read_text())


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path           # a CA nobody used: trusting only it must fail


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, cn: str, server: bool):  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def pki(tmp: Path) -> Pki:
    ca_key, ca_cert = _ca("fhir-kit test CA")
    server_key, server_cert = _leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = _leaf(ca_key, ca_cert, "fhir-conformance client", server=False)
    _, other = _ca("unrelated CA")
    out = {}
    for name, data in {"ca.pem": ca_cert.public_bytes(serialization.Encoding.PEM),
                       "server.pem": server_cert.public_bytes(serialization.Encoding.PEM),
                       "server.key": _pem(server_key),
                       "client.pem": client_cert.public_bytes(serialization.Encoding.PEM),
                       "client.key": _pem(client_key),
                       "other-ca.pem": other.public_bytes(serialization.Encoding.PEM)}.items():
        (tmp / name).write_bytes(data)
        out[name] = tmp / name
    return Pki(out["ca.pem"], out["server.pem"], out["server.key"], out["client.pem"], out["client.key"],
               out["other-ca.pem"])
