"""A local Kubernetes cluster made of real control-plane processes, with kwok simulating the nodes.

kube-apiserver, kube-controller-manager, kube-scheduler and etcd are the real binaries (built by
tools/install); kwok plays the kubelets, so pods become Ready and Job pods succeed without running
containers. Everything listens on 127.0.0.1 and lives under the clone's ``.state/`` directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.devstack.paths import StateDirs, require_tools
from tools.versions import pinned_versions

CONTROL_PLANE_TOOLS = (
    "kwokctl",
    "kwok",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "kubectl",
)
STORAGE_CLASS = "standard"
MANAGED_LABEL = "qframe.io/local-cluster"


class ClusterError(RuntimeError):
    """A cluster step failed; the message carries the command, its output and what to do."""


# ---------------------------------------------------------------------------------------------
# Pure builders: the objects that make a bare control plane usable for the platform
# ---------------------------------------------------------------------------------------------


def kwokctl_config() -> dict[str, Any]:
    """kwokctl options: bind to loopback only and use our kubectl instead of downloading one."""
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {"bindAddress": "127.0.0.1"},
    }


def node_manifest(name: str, *, cpu: str = "16", memory: str = "64Gi", pods: int = 110) -> dict[str, Any]:
    """A fake node kwok keeps Ready; sized so the dev stack's requests always fit."""
    capacity = {"cpu": cpu, "memory": memory, "pods": str(pods), "ephemeral-storage": "200Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                MANAGED_LABEL: "true",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def storage_class_manifest() -> dict[str, Any]:
    """The default StorageClass. No provisioner runs here, so claims bind to the pre-made pool."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            "labels": {MANAGED_LABEL: "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }


def volume_pool_manifests(count: int, size: str = "256Gi") -> list[dict[str, Any]]:
    """Pre-made PersistentVolumes the controller-manager binds claims to (smallest fit wins).

    hostPath is never mounted: kwok runs no containers. Sizes are generous so any claim fits.
    """
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"local-pv-{index:03d}", "labels": {MANAGED_LABEL: "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": f"/var/lib/qframe-local-pv/{index:03d}"},
            },
        }
        for index in range(count)
    ]


def released_volume_patches(volumes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of pool volumes left Released by a deleted claim; clearing their claimRef reuses them.

    Without this a `make down`-less destroy/up cycle would run the pool dry.
    """
    return [
        v["metadata"]["name"]
        for v in volumes
        if v.get("status", {}).get("phase") == "Released" and v["metadata"].get("labels", {}).get(MANAGED_LABEL)
    ]


# ---------------------------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalCluster:
    name: str
    state: StateDirs
    nodes: int = 2
    volumes: int = 24

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    def _env(self) -> dict[str, str]:
        versions = pinned_versions()
        env = dict(os.environ)
        env.update(
            {
                "KWOK_WORKDIR": str(self.state.kwok_home),
                "KWOK_KUBE_VERSION": f"v{versions['KUBE_VERSION']}",
                "KUBECONFIG": str(self.kubeconfig),
            }
        )
        return env

    def _run(self, args: Sequence[str | Path], *, what: str, input_text: str | None = None) -> str:
        proc = subprocess.run(
            [str(a) for a in args],
            env=self._env(),
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if proc.returncode != 0:
            raise ClusterError(
                f"{what} failed (exit {proc.returncode}): {' '.join(str(a) for a in args)}\n"
                f"{(proc.stderr or proc.stdout).strip()[-3000:]}\n"
                f"To start over: make down (removes the local cluster), then make up."
            )
        return proc.stdout

    def exists(self) -> bool:
        return (self.state.kwok_home / "clusters" / self.name).is_dir()

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        tools = require_tools("kubectl")
        return self._run(
            [tools["kubectl"], "--kubeconfig", self.kubeconfig, *args], what=f"kubectl {args[0]}", input_text=input_text
        )

    def apply(self, objects: Sequence[Mapping[str, Any]]) -> None:
        document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl(
            "apply", "--server-side", "--field-manager=qframe-devstack", "-f", "-", input_text=json.dumps(document)
        )

    def create(self) -> None:
        """Starts the control plane (idempotent: an existing cluster is started, not recreated)."""
        tools = require_tools(*CONTROL_PLANE_TOOLS)
        self.state.root.mkdir(parents=True, exist_ok=True)
        config = self.state.root / "kwokctl.yaml"
        options = kwokctl_config()
        options["options"]["kubectlBinary"] = str(tools["kubectl"])
        config.write_text(json.dumps(options))
        if self.exists():
            self._run(
                [tools["kwokctl"], "--name", self.name, "start", "cluster", "--wait", "120s"], what="kwokctl start"
            )
        else:
            self._run(
                [
                    tools["kwokctl"],
                    "--name",
                    self.name,
                    "--config",
                    config,
                    "create",
                    "cluster",
                    "--runtime",
                    "binary",
                    "--kube-apiserver-binary",
                    tools["kube-apiserver"],
                    "--kube-controller-manager-binary",
                    tools["kube-controller-manager"],
                    "--kube-scheduler-binary",
                    tools["kube-scheduler"],
                    "--etcd-binary",
                    tools["etcd"],
                    "--kwok-controller-binary",
                    tools["kwok"],
                    "--kubeconfig",
                    self.kubeconfig,
                    "--wait",
                    "120s",
                ],
                what="kwokctl create cluster",
            )
        self.prepare()

    def prepare(self) -> None:
        """Nodes, the default StorageClass and the volume pool; reclaims volumes left Released."""
        nodes = [node_manifest(f"kwok-node-{i}") for i in range(self.nodes)]
        self.apply([*nodes, storage_class_manifest(), *volume_pool_manifests(self.volumes)])
        volumes = json.loads(self.kubectl("get", "pv", "-l", MANAGED_LABEL, "-o", "json"))["items"]
        for name in released_volume_patches(volumes):
            self.kubectl("patch", "pv", name, "--type=json", "-p", '[{"op": "remove", "path": "/spec/claimRef"}]')

    def delete(self) -> None:
        if not self.exists():
            return
        tools = require_tools("kwokctl")
        self._run(
            [tools["kwokctl"], "--name", self.name, "delete", "cluster", "--kubeconfig", self.kubeconfig],
            what="kwokctl delete",
        )
        self.kubeconfig.unlink(missing_ok=True)
