"""hastack's own certificate authority: the CA and every node's certificate, from one secret.

The stored secret (`tls_ca`) holds the day it was made and 32 random bytes. Every key is
derived from those bytes (HKDF, one label per key) and every signature is deterministic
ECDSA (RFC 6979), so rendering twice gives the same bytes: deploy stays idempotent, a node
added later gets a certificate from the same CA, and nothing but the one secret is kept.
Rotating it replaces the CA and every certificate at once.

P-256, not Ed25519: browsers (horizon, the stats page) refuse Ed25519 certificates.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import re
import secrets as _random
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_SECRET = "tls_ca"
SHAPE = re.compile(r"(\d{8})-([A-Za-z0-9_-]{43}=)")
VALID_DAYS = 3650
# P-256's group order: a derived scalar must fall in [1, n-1].
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def new_ca_secret(today: dt.date | None = None) -> str:
    day = today or dt.datetime.now(dt.UTC).date()
    return f"{day:%Y%m%d}-{base64.urlsafe_b64encode(_random.token_bytes(32)).decode()}"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM."""

    cert: bytes
    key: bytes

    @property
    def bundle(self) -> bytes:
        """Certificate then key in one file (mongod's certificateKeyFile, haproxy's crt)."""
        return self.cert + self.key

    @property
    def spki_sha256(self) -> str:
        """The certificate's public key as a pin: base64 of the SHA-256 of its SubjectPublicKeyInfo
        (what Chromium's --ignore-certificate-errors-spki-list takes)."""
        spki = x509.load_pem_x509_certificate(self.cert).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@dataclass(frozen=True)
class Authority:
    """The cluster's CA. `secret` is the stored `tls_ca` value."""

    cluster: str
    secret: str

    @cached_property
    def _parts(self) -> tuple[dt.datetime, bytes]:
        m = SHAPE.fullmatch(self.secret)
        if not m:
            raise ValueError(f"{CA_SECRET} is not of the shape hastack generates")
        day = dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
        return day, base64.urlsafe_b64decode(m.group(2))

    def _key(self, label: str) -> ec.EllipticCurvePrivateKey:
        okm = HKDF(hashes.SHA256(), 48, salt=b"hastack-pki", info=label.encode()).derive(self._parts[1])
        return ec.derive_private_key(int.from_bytes(okm, "big") % (_ORDER - 1) + 1, ec.SECP256R1())

    def _serial(self, label: str) -> int:
        return int.from_bytes(hashlib.sha256(b"hastack-serial\0" + self._parts[1] + label.encode()).digest()[:19],
                              "big") | 1

    @property
    def _validity(self) -> tuple[dt.datetime, dt.datetime]:
        start = self._parts[0] - dt.timedelta(days=1)  # a host whose clock is a little behind still accepts it
        return start, start + dt.timedelta(days=VALID_DAYS)

    @cached_property
    def _ca_key(self) -> ec.EllipticCurvePrivateKey:
        return self._key("ca")

    @cached_property
    def _ca_name(self) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hastack"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"hastack CA {self.cluster}")])

    @cached_property
    def cert(self) -> bytes:
        """The CA certificate (PEM): every host and client trusts it."""
        key = self._ca_key
        start, end = self._validity
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        c = (x509.CertificateBuilder().subject_name(self._ca_name).issuer_name(self._ca_name)
             .public_key(key.public_key()).serial_number(self._serial("ca"))
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(ski, critical=False)
             .sign(key, hashes.SHA256(), ecdsa_deterministic=True))
        return c.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> Issued:
        """A certificate for `name` (its common name), valid for those names and addresses, for both
        ends of a connection: cluster members (galera, mongod) connect to each other with it."""
        label = "leaf\0" + name + "\0" + ",".join(dns) + "\0" + ",".join(ips)
        key = self._key(label)
        start, end = self._validity
        ca_pub = self._ca_key.public_key()
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys((name, *dns))]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(ips)]
        c = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hastack"),
                                      x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(self._ca_name).public_key(key.public_key()).serial_number(self._serial(label))
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False, key_agreement=True,
                                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
             .add_extension(x509.SubjectAlternativeName(sans), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_pub), critical=False)
             .sign(self._ca_key, hashes.SHA256(), ecdsa_deterministic=True))
        pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return Issued(c.public_bytes(serialization.Encoding.PEM), pem_key)
