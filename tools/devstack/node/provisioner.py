"""The node's dynamic volume provisioner: one directory per claim of the default StorageClass.

hostPath volumes get no fsGroup ownership change, so each directory is created mode 0777: a
non-root pod of any UID can write it. The directory is deleted together with its PV when the
claim goes (reclaimPolicy Delete). It runs as a host process next to the other node daemons:

    python -m tools.devstack.node.provisioner --kubeconfig <admin> --root <dir>

and reconciles every two seconds through kubectl (a few PVCs, no need for a watch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tools.devstack.node.addons import PROVISIONER, STORAGE_CLASS

PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def claims_to_provision(
    claims: Iterable[Mapping[str, Any]], volumes: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Pending claims of our class that no volume is bound or pre-bound to yet."""
    taken = {
        (v["spec"].get("claimRef") or {}).get("uid") for v in volumes if (v["spec"].get("claimRef") or {}).get("uid")
    }
    return [
        c
        for c in claims
        if c["spec"].get("storageClassName") == STORAGE_CLASS
        and not c["spec"].get("volumeName")
        and c.get("status", {}).get("phase", "Pending") == "Pending"
        and c["metadata"]["uid"] not in taken
        and not c["metadata"].get("deletionTimestamp")
    ]


def volume_name(claim: Mapping[str, Any]) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def volume_for_claim(claim: Mapping[str, Any], root: Path) -> dict[str, Any]:
    name = volume_name(claim)
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": list(claim["spec"].get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": claim["spec"].get("volumeMode", "Filesystem"),
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(root / name), "type": "Directory"},
        },
    }


def volumes_to_delete(volumes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Our volumes whose claim is gone (Released or Failed) and whose policy is Delete."""
    return [
        v
        for v in volumes
        if (v["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
        and v["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
        and v.get("status", {}).get("phase") in ("Released", "Failed")
    ]


def make_volume_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)  # noqa: S103 - any pod UID must write it (no fsGroup on hostPath)


class Kubectl:
    def __init__(self, kubectl: str, kubeconfig: str) -> None:
        self.base = [kubectl, "--kubeconfig", kubeconfig]

    def __call__(self, *args: str, input_text: str | None = None) -> str:
        proc = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, input=input_text, check=False, timeout=60
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def items(self, *args: str) -> list[dict[str, Any]]:
        return list(json.loads(self("get", *args, "-o", "json"))["items"])


def reconcile(kubectl: Kubectl, root: Path) -> list[str]:
    """One pass; returns what it did, for the log."""
    done = []
    volumes = kubectl.items("pv")
    for claim in claims_to_provision(kubectl.items("pvc", "-A"), volumes):
        pv = volume_for_claim(claim, root)
        make_volume_dir(Path(pv["spec"]["hostPath"]["path"]))
        kubectl("create", "-f", "-", input_text=json.dumps(pv))
        done.append(
            f"provisioned {pv['metadata']['name']} for {claim['metadata']['namespace']}/{claim['metadata']['name']}"
        )
    for gone in volumes_to_delete(volumes):
        path = Path(gone["spec"]["hostPath"]["path"])
        if path.parent == root:
            shutil.rmtree(path, ignore_errors=True)
        kubectl("delete", "pv", gone["metadata"]["name"], "--wait=false")
        done.append(f"deleted {gone['metadata']['name']} and {path}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    kubectl = Kubectl(args.kubectl, args.kubeconfig)
    while True:
        try:
            for line in reconcile(kubectl, args.root):
                print(time.strftime("%H:%M:%S"), line, flush=True)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            print(time.strftime("%H:%M:%S"), "error:", exc, file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
