"""Pods inside the real node's cluster for the e2e traffic tests: build, start, exec, clean up.

Every traffic test needs the same things: a restricted-profile pod that idles so a test can exec
Python into it, labelled as a workload of the platform would be, made from one of the stack's own
images; kubectl against the test cluster; and the JSON line a script prints as its result.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from infra.config import parse_raw_config
from infra.images import image_ref
from infra.offline import REPO_ROOT, load_stack_file
from tests.e2e.conftest import DevStack
from tools.devstack.paths import require_tools

NAMESPACE = "qframe"
CONNECT_TIMEOUT_S = 5


def kubectl(stack: DevStack, *args: str, input_text: str | None = None, check: bool = True) -> str:
    """kubectl against the test cluster; stdout + stderr, or an AssertionError carrying both."""
    binary = require_tools("kubectl")["kubectl"]
    proc = subprocess.run(
        [str(binary), "--kubeconfig", str(stack.kubeconfig), *args],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def stack_image(name: str) -> str:
    """The reference of one of the dev stack's images, as its components render it."""
    config = parse_raw_config(load_stack_file(REPO_ROOT / "Pulumi.dev.yaml"))
    return image_ref(config.images, name).reference


def secret_env(variable: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def idle_pod(
    name: str,
    image: str,
    labels: Mapping[str, str],
    env: Sequence[Mapping[str, Any]],
    *,
    requests: Mapping[str, str],
    limits: Mapping[str, str],
    writable_tmp: bool = False,
) -> dict[str, Any]:
    """A restricted-profile pod (no service-account token, read-only root) that idles for exec."""
    container: dict[str, Any] = {
        "name": "client",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", "import time; time.sleep(3600)"],
        "env": list(env),
        "resources": {"requests": dict(requests), "limits": dict(limits)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if writable_tmp:
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
        spec["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": name, **labels}},
        "spec": spec,
    }


@contextmanager
def running_pods(stack: DevStack, manifests: Sequence[Mapping[str, Any]], *, timeout_s: int) -> Iterator[list[str]]:
    """Creates the pods, waits until each is Ready, and deletes them afterwards (without waiting)."""
    names = [str(m["metadata"]["name"]) for m in manifests]
    document = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
    kubectl(stack, "apply", "-f", "-", input_text=json.dumps(document))
    try:
        for name in names:
            kubectl(stack, "wait", "-n", NAMESPACE, "--for=condition=Ready", f"pod/{name}", f"--timeout={timeout_s}s")
        yield names
    finally:
        kubectl(stack, "delete", "pod", "-n", NAMESPACE, *names, "--wait=false", check=False)


def run_in(stack: DevStack, pod: str, script: str) -> subprocess.CompletedProcess[str]:
    """``python3 -c script`` inside ``pod`` (a pod name or ``deploy/<name>``)."""
    binary = require_tools("kubectl")["kubectl"]
    return subprocess.run(
        [
            str(binary),
            "--kubeconfig",
            str(stack.kubeconfig),
            "exec",
            "-n",
            NAMESPACE,
            pod,
            "--",
            "python3",
            "-c",
            textwrap.dedent(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON object a script printed last; an AssertionError with its output if it failed."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
