"""Where each Service answers from the host (pure): a NodePort on the node IP, or the
`kubectl port-forward` command for a ClusterIP Service."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def endpoint_lines(services: Iterable[Mapping[str, Any]], node_ip: str, kubeconfig: Path) -> list[tuple[str, str]]:
    lines = []
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        meta, spec = svc["metadata"], svc["spec"]
        name, namespace = meta["name"], meta["namespace"]
        ports = spec.get("ports") or []
        if spec.get("clusterIP") == "None" or not ports:
            continue  # headless: reached through its pods' names inside the cluster
        for port in ports:
            label = f"{name}:{port['port']}" + (f" ({port['name']})" if port.get("name") else "")
            if spec.get("type") in ("NodePort", "LoadBalancer") and port.get("nodePort"):
                lines.append((label, f"{node_ip}:{port['nodePort']}"))
            else:
                lines.append(
                    (
                        label,
                        f"KUBECONFIG={kubeconfig} kubectl -n {namespace} port-forward svc/{name} "
                        f"{port['port']}:{port['port']}",
                    )
                )
    return lines
