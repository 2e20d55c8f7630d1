"""Runs `pulumi preview` of a small program with the policy pack, as make up would (tests only).

The program is copied into a temp project with its own file backend, passphrase and PULUMI_HOME, so
nothing touches a developer's .state/; plugins resolve from .tools/bin and Python from the .venv
(the same PATH order tools/devstack uses), with automatic plugin downloads off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tools.devstack.pulumi_cli import POLICY_PACK
from tools.paths import REPO_ROOT, TOOLS_BIN, VENV_BIN

BAD_PROGRAM = REPO_ROOT / "tests" / "fixtures" / "policy" / "programs" / "bad"
PREVIEW_TIMEOUT_S = 300


def pulumi_env(work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "QFRAME_POLICY_", "KUBECONFIG"))}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), str(TOOLS_BIN), os.environ.get("PATH", "")])
    env.update(
        {
            "PULUMI_HOME": str(work / "pulumi-home"),
            "PULUMI_BACKEND_URL": (work / "backend").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "policy-test-only",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "COLUMNS": "240",
        }
    )
    env.update(extra)
    return env


def run_with_pack(
    work: Path,
    *,
    variant: str,
    command: str = "preview",
    kubeconfig: Path | None = None,
    render_dir: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`pulumi preview` (or `up --yes --skip-preview`, what make up runs) with ``--policy-pack policy/analyzer``
    of the bad program (variant "bad") or its fixed twin (variant "good").

    ``render_dir``: the Kubernetes provider only renders YAML there (no cluster); else ``kubeconfig``.
    """
    project = work / f"project-{variant}-{command}"
    shutil.copytree(BAD_PROGRAM, project, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "backend").mkdir(parents=True, exist_ok=True)
    extra = {"QFRAME_POLICY_VARIANT": variant}
    if render_dir is not None:
        extra["QFRAME_POLICY_RENDER_DIR"] = str(render_dir)
    if kubeconfig is not None:
        extra["KUBECONFIG"] = str(kubeconfig)
    env = pulumi_env(work, **extra)
    pulumi = str(TOOLS_BIN / "pulumi")
    stack = f"policy-{variant}-{command}"
    subprocess.run(
        [pulumi, "--non-interactive", "stack", "select", "--create", stack],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=PREVIEW_TIMEOUT_S,
    )
    verb = ["up", "--yes", "--skip-preview"] if command == "up" else ["preview"]
    return subprocess.run(
        [pulumi, "--non-interactive", *verb, "--stack", stack, "--policy-pack", str(POLICY_PACK)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=PREVIEW_TIMEOUT_S,
        check=False,
    )


# What the bad program breaks, by rule; the good twin breaks none.
BAD_PROGRAM_VIOLATIONS = {
    "k8s-workload-non-root": "Deployment 'policy-web' container 'app': securityContext.runAsUser is 0 (root)",
    "k8s-workload-capabilities-dropped": "Deployment 'policy-web' container 'app': securityContext.capabilities.drop",
    "k8s-workload-read-only-root-fs": "Deployment 'policy-web' container 'app': securityContext.readOnlyRootFilesystem",
    "k8s-workload-resources": "Deployment 'policy-web' container 'app': resources requests.cpu",
    "k8s-configmap-no-secrets": "ConfigMap 'policy-settings': data key 'db_password' looks like a credential",
}
