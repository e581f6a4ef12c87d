"""The cluster's PKI: one CA for every serving and client certificate, plus the
service-account signing key pair, written as PEM files into a directory.

EC P-256 keys throughout: every component accepts them and they take microseconds
to generate, so a fresh PKI per test run costs nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

APISERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
LOOPBACK = ("127.0.0.1",)
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR: what pods dial for the API
VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class CertKey:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    ca: CertKey
    apiserver: CertKey  # serving
    apiserver_etcd_client: CertKey
    apiserver_kubelet_client: CertKey  # the API server calling the kubelet (pods/log, exec)
    etcd: CertKey  # serving
    admin: CertKey  # O=system:masters
    controller_manager: CertKey
    scheduler: CertKey
    kubelet_client: CertKey  # system:node:<name>, for the Node authorizer
    kubelet_server: CertKey
    kube_proxy: CertKey
    service_account_key: Path
    service_account_pub: Path


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def create_pki(directory: Path, node_name: str, node_ip: str) -> ClusterPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lockgate-test-ca")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    issuer = _Issuer(ca_cert, ca_key)

    def issue(
        name: str, cn: str, org: str | None = None, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()
    ) -> CertKey:
        return _write_pair(directory, name, *_issue(issuer, cn, org, dns, ips))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    return ClusterPKI(
        ca=_write_pair(directory, "ca", ca_cert, ca_key),
        apiserver=issue(
            "apiserver", "kube-apiserver", dns=APISERVER_NAMES, ips=(*LOOPBACK, node_ip, KUBERNETES_SERVICE_IP)
        ),
        apiserver_etcd_client=issue("apiserver-etcd-client", "kube-apiserver-etcd-client"),
        apiserver_kubelet_client=issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
        etcd=issue("etcd", "etcd", dns=("localhost",), ips=LOOPBACK),
        admin=issue("admin", "lockgate-test-admin", "system:masters"),
        controller_manager=issue("controller-manager", "system:kube-controller-manager"),
        scheduler=issue("scheduler", "system:kube-scheduler"),
        kubelet_client=issue("kubelet-client", f"system:node:{node_name}", "system:nodes"),
        kubelet_server=issue("kubelet-server", node_name, dns=(node_name, "localhost"), ips=(*LOOPBACK, node_ip)),
        kube_proxy=issue("kube-proxy", "system:kube-proxy"),
        service_account_key=_write(directory / "sa.key", _key_pem(sa_key), private=True),
        service_account_pub=_write(
            directory / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    # Backdated a little so a component whose clock reads slightly behind still trusts it.
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
    )


def _issue(
    issuer: _Issuer, cn: str, org: str | None, dns: tuple[str, ...], ips: tuple[str, ...]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate, for serving when it names hosts, else for client authentication."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    serving = bool(dns or ips)
    builder = (
        _builder(x509.Name(attributes), issuer.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(
            # etcd's serving certificate doubles as a client one when etcd probes itself.
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                if serving
                else [ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if serving:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer.key, hashes.SHA256()), key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_pair(directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertKey:
    return CertKey(
        cert=_write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
        key=_write(directory / f"{name}.key", _key_pem(key), private=True),
    )


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)
    return path
