"""Certificates of the node: one CA, serving certs, client certs per component, kubeconfigs.

ECDSA P-256 keys throughout: generated in milliseconds (RSA 2048 takes ~50 ms each) and accepted
by every component, service-account token signing included (ES256). The CA is kept across ups of
the same state dir so kubeconfigs handed out earlier stay valid; leaf certs are re-issued only when
missing. Pure parts (``certificate_plan``, ``kubeconfig``) are tested without touching disk.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tools.devstack.node.layout import NetworkPlan

VALIDITY = datetime.timedelta(days=365)
KeyType = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: file stem, subject, server and/or client use, SANs."""

    name: str
    common_name: str
    organization: str | None = None
    server: bool = False
    client: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


def apiserver_sans(net: NetworkPlan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS and IP SANs of the apiserver's serving cert: the node IP for host clients, the
    kubernetes Service IP and names for pods, loopback for tools on the node."""
    dns = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{net.cluster_domain}",
        "localhost",
    )
    return dns, (net.node_ip, net.kubernetes_service_ip, "127.0.0.1")


def certificate_plan(net: NetworkPlan) -> list[CertSpec]:
    dns, ips = apiserver_sans(net)
    node = net.node_name
    return [
        CertSpec("apiserver", "kube-apiserver", server=True, dns_names=dns, ip_addresses=ips),
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True),
        CertSpec("admin", "qframe-admin", "system:masters", client=True),
        CertSpec("controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("scheduler", "system:kube-scheduler", client=True),
        CertSpec("kube-proxy", "system:kube-proxy", client=True),
        # RBAC for this user is the ClusterRole in addons.kube_router_rbac().
        CertSpec("kube-router", "system:kube-router", client=True),
        CertSpec("kubelet-client", f"system:node:{node}", "system:nodes", client=True),
        CertSpec(
            "kubelet-serving",
            f"system:node:{node}",
            "system:nodes",
            server=True,
            dns_names=(node, "localhost"),
            ip_addresses=(net.node_ip, "127.0.0.1"),
        ),
    ]


# Which kubeconfig each component reads, and the cert it presents.
KUBECONFIG_USERS = {
    "admin": "admin",
    "controller-manager": "controller-manager",
    "scheduler": "scheduler",
    "kube-proxy": "kube-proxy",
    "kube-router": "kube-router",
    "kubelet": "kubelet-client",
}


def kubeconfig(*, server: str, ca_file: Path, cert_file: Path, key_file: Path, user: str) -> dict[str, Any]:
    """A kubeconfig with file references (no embedded keys), one cluster, one user, one context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "qframe-node", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert_file), "client-key": str(key_file)}}],
        "contexts": [{"name": "qframe-node", "context": {"cluster": "qframe-node", "user": user}}],
        "current-context": "qframe-node",
    }


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def new_key() -> KeyType:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(key: KeyType, now: datetime.datetime) -> x509.Certificate:
    subject = _name("qframe-node-ca")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY * 10)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def make_leaf(
    spec: CertSpec, key: KeyType, ca_cert: x509.Certificate, ca_key: KeyType, now: datetime.datetime
) -> x509.Certificate:
    usages = []
    if spec.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.common_name, spec.organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _key_pem(key: KeyType) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def ensure_pki(directory: Path, net: NetworkPlan, specs: Sequence[CertSpec] | None = None) -> None:
    """Creates what is missing in ``directory``: ca.{crt,key}, sa.{key,pub}, <name>.{crt,key}."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_crt, ca_key_file = directory / "ca.crt", directory / "ca.key"
    if ca_crt.is_file() and ca_key_file.is_file():
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{ca_key_file} is not an EC key; delete {directory} to issue a new CA")
        ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    else:
        ca_key = new_key()
        ca_cert = make_ca(ca_key, now)
        _write(ca_key_file, _key_pem(ca_key), 0o600)
        _write(ca_crt, _cert_pem(ca_cert), 0o644)
    if not (directory / "sa.key").is_file():
        sa_key = new_key()
        _write(directory / "sa.key", _key_pem(sa_key), 0o600)
        pub = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(directory / "sa.pub", pub, 0o644)
    for spec in specs if specs is not None else certificate_plan(net):
        crt, key_file = directory / f"{spec.name}.crt", directory / f"{spec.name}.key"
        if crt.is_file() and key_file.is_file():
            continue
        key = new_key()
        _write(key_file, _key_pem(key), 0o600)
        _write(crt, _cert_pem(make_leaf(spec, key, ca_cert, ca_key, now)), 0o644)
