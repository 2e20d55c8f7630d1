"""Pure builders of every config file and command line of the node.

Each function takes the layout, the network plan and the tool paths and returns data (a dict, a
TOML string, an argv list); ``node.py`` writes them. The comments name the facts of this machine
that force a setting (cgroup v1, no CAP_SYS_RESOURCE, no registry).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.devstack.node.layout import NetworkPlan, NodeLayout

CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CNI_NETWORK = "qframe-pods"
ETCD_CLIENT_PORT = 12379  # not 2379: a kwok cluster or another etcd may run on this machine
ETCD_PEER_PORT = 12380


# ---------------------------------------------------------------------------------------------
# TOML (containerd reads only TOML; the stdlib can parse it but not write it)
# ---------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value: {value!r}")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def to_toml(document: Mapping[str, Any]) -> str:
    """Nested dicts of scalars and lists as TOML: scalars first, then one [table] per dict."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], path: list[str]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        if path and (scalars or not tables):
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for key, value in scalars.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if scalars:
            lines.append("")
        for key, value in tables.items():
            emit(value, [*path, key])

    emit(document, [])
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# containerd and CNI
# ---------------------------------------------------------------------------------------------


def containerd_config(layout: NodeLayout, *, sandbox_image: str) -> dict[str, Any]:
    cri = "io.containerd.grpc.v1.cri"
    return {
        "version": 2,
        "root": str(layout.containerd_root),
        "state": str(layout.containerd_state),
        "oom_score": 0,
        "grpc": {"address": str(layout.containerd_socket)},
        "ttrpc": {"address": str(layout.containerd_socket) + ".ttrpc"},
        "plugins": {
            cri: {
                # No registry is reachable: the pause image is built and imported under this name.
                "sandbox_image": sandbox_image,
                # This VM's root lacks CAP_SYS_RESOURCE: without this every sandbox fails with
                # "can't get final child's PID from pipe".
                "restrict_oom_score_adj": True,
                # cgroup v1 here has no hugetlb controller mounted.
                "tolerate_missing_hugetlb_controller": True,
                "enable_unprivileged_ports": False,
                "containerd": {
                    "snapshotter": "overlayfs",
                    "default_runtime_name": "runc",
                    "runtimes": {
                        "runc": {
                            "runtime_type": "io.containerd.runc.v2",
                            # kubelet runs with cgroupDriver cgroupfs (no systemd manages cgroups).
                            "options": {"SystemdCgroup": False},
                        }
                    },
                },
                "cni": {"bin_dir": str(CNI_BIN_DIR), "conf_dir": str(layout.cni_conf_dir), "max_conf_num": 1},
            },
            "io.containerd.internal.v1.opt": {"path": str(layout.lib / "opt")},
        },
    }


def cni_conflist(layout: NodeLayout, net: NetworkPlan) -> dict[str, Any]:
    """bridge + host-local IPAM + portmap. containerd runs the loopback plugin itself for every
    sandbox (it must be in bin_dir), so it is not part of the chain."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.pod_bridge,
                "isGateway": True,
                # Pods only talk to the node and each other: no masquerade rules to clean up.
                "ipMasq": False,
                # Lets a pod reach itself through its own Service (kube-proxy masquerades that).
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.node_pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_data / "networks"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


# ---------------------------------------------------------------------------------------------
# kubelet and kube-proxy
# ---------------------------------------------------------------------------------------------


def kubelet_config(layout: NodeLayout, net: NetworkPlan) -> dict[str, Any]:
    pki = layout.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroup v1 and no systemd cgroup manager on this machine.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [net.cluster_dns],
        "clusterDomain": net.cluster_domain,
        # Pods with dnsPolicy Default get no host resolvers: nothing outside the cluster answers.
        "resolvConf": "",
        "podCIDR": net.node_pod_cidr,
        "maxPods": 110,
        # Images cannot be pulled again (no registry): never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Absolute thresholds: on a shared development disk (image builds, caches) a percentage of a
        # large volume evicts the stack while gigabytes are still free. All five are set because a
        # partial evictionHard drops kubelet's defaults for the others.
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "1Gi",
            "imagefs.available": "1Gi",
            "nodefs.inodesFree": "1%",
            "imagefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "podLogsDir": str(layout.lib / "pod-logs"),
        "volumePluginDir": str(layout.kubelet_root / "volume-plugins"),
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(layout: NodeLayout, net: NetworkPlan) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": net.pod_cidr,
        "hostnameOverride": net.node_name,
        "bindAddress": net.node_ip,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        # 0: leave the host's conntrack sysctls alone (nothing to restore on down).
        "conntrack": {"maxPerCore": 0, "min": 0},
        # NodePorts answer on the node's bridge only, not on every address of the host;
        # no localhost NodePorts, so route_localnet stays untouched.
        "nodePortAddresses": [f"{net.node_ip}/32"],
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "syncPeriod": "10s"},
    }


# ---------------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonSpec:
    """A host process of the node: argv, and the probe that says it is ready."""

    name: str
    argv: tuple[str, ...]
    # "https://..." or "http://..." URL (client certs from the admin identity), "socket:<path>",
    # or "alive" (no endpoint: ready when it is still running after half a second)
    ready: str
    timeout_s: float = 60.0


def daemon_specs(layout: NodeLayout, net: NetworkPlan, tools: Mapping[str, Path]) -> list[DaemonSpec]:
    """Start order: etcd, apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy,
    kube-router (its firewall only)."""
    pki, cfg = layout.pki, layout.config
    api = f"https://{net.node_ip}:{net.apiserver_port}"
    etcd_url = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"

    def t(name: str) -> str:
        return str(tools[name])

    return [
        DaemonSpec(
            "etcd",
            (
                t("etcd"),
                "--name=qframe-node",
                f"--data-dir={layout.etcd_data}",
                # Loopback only, so plain http is not reachable from pods or other hosts.
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-cluster=qframe-node=http://127.0.0.1:{ETCD_PEER_PORT}",
                "--listen-metrics-urls=",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ),
            ready=f"{etcd_url}/health",
        ),
        DaemonSpec(
            "kube-apiserver",
            (
                t("kube-apiserver"),
                # On the node bridge: reachable from pods (through the kubernetes Service) and
                # from this host, from nothing else.
                f"--advertise-address={net.node_ip}",
                f"--bind-address={net.node_ip}",
                f"--secure-port={net.apiserver_port}",
                f"--etcd-servers={etcd_url}",
                f"--service-cluster-ip-range={net.service_cidr}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer=https://kubernetes.default.svc.{net.cluster_domain}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--profiling=false",
                "--event-ttl=30m",
            ),
            ready=f"{api}/readyz",
        ),
        DaemonSpec(
            "kube-controller-manager",
            (
                t("kube-controller-manager"),
                f"--kubeconfig={layout.kubeconfig('controller-manager')}",
                f"--authentication-kubeconfig={layout.kubeconfig('controller-manager')}",
                f"--authorization-kubeconfig={layout.kubeconfig('controller-manager')}",
                "--bind-address=127.0.0.1",
                "--secure-port=10257",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=true",
                "--allocate-node-cidrs=true",
                f"--cluster-cidr={net.pod_cidr}",
                "--node-cidr-mask-size=24",
                f"--service-cluster-ip-range={net.service_cidr}",
                "--leader-elect=false",
                "--profiling=false",
            ),
            ready="https://127.0.0.1:10257/healthz",
        ),
        DaemonSpec(
            "kube-scheduler",
            (
                t("kube-scheduler"),
                f"--kubeconfig={layout.kubeconfig('scheduler')}",
                f"--authentication-kubeconfig={layout.kubeconfig('scheduler')}",
                f"--authorization-kubeconfig={layout.kubeconfig('scheduler')}",
                "--bind-address=127.0.0.1",
                "--secure-port=10259",
                "--leader-elect=false",
                "--profiling=false",
            ),
            ready="https://127.0.0.1:10259/healthz",
        ),
        DaemonSpec(
            "containerd",
            (t("containerd"), f"--config={cfg / 'containerd.toml'}"),
            ready=f"socket:{layout.containerd_socket}",
        ),
        DaemonSpec(
            "kubelet",
            (
                t("kubelet"),
                f"--config={cfg / 'kubelet.json'}",
                f"--kubeconfig={layout.kubeconfig('kubelet')}",
                f"--root-dir={layout.kubelet_root}",
                f"--hostname-override={net.node_name}",
                f"--node-ip={net.node_ip}",
                f"--cert-dir={layout.kubelet_root / 'pki'}",
            ),
            ready="http://127.0.0.1:10248/healthz",
        ),
        DaemonSpec(
            "kube-proxy",
            (t("kube-proxy"), f"--config={cfg / 'kube-proxy.json'}"),
            ready="http://127.0.0.1:10256/healthz",
        ),
        DaemonSpec(
            "kube-router",
            (
                t("kube-router"),
                f"--kubeconfig={layout.kubeconfig('kube-router')}",
                f"--hostname-override={net.node_name}",
                # Only the NetworkPolicy firewall: routing, service proxy and CNI stay with the
                # bridge plugin and kube-proxy.
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--run-loadbalancer=false",
                "--enable-cni=false",
                "--enable-ipv6=false",
                f"--service-cluster-ip-range={net.service_cidr}",
                "--health-port=20244",
                "--metrics-port=0",
            ),
            ready="http://127.0.0.1:20244/healthz",
        ),
    ]
