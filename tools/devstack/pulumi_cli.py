"""The Pulumi CLI, run offline with a local file backend and a per-clone passphrase.

The stack is run from a generated project directory under ``.state/`` whose ``main`` points back
at ``infra/`` and whose stack file is the repository's ``Pulumi.<stack>.yaml``. Pulumi writes an
``encryptionsalt`` into the stack file it uses (and ``stack rm`` deletes that file), so working on
a copy keeps the committed stack files untouched however often `make up` and the tests run.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.config import PROJECT, StackConfig
from infra.stack_file import read_stack_file
from tools.devstack.paths import StateDirs, require_tools
from tools.paths import REPO_ROOT, TOOLS_BIN, VENV_BIN

PULUMI_TOOLS = ("pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-kubernetes")
# The CrossGuard pack (policy/), started as an executable analyzer: the pinned Python language host
# cannot start a Python pack from its directory (policy/analyzer says why).
POLICY_PACK = REPO_ROOT / "policy" / "analyzer"
# The one policy whose verdict depends on the stack (policy/qframe_policy/rds.py).
ENVIRONMENT_POLICY = "rds-backups-off-dev"


class PulumiError(RuntimeError):
    """A pulumi command failed; carries the command and its output."""

    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        self.returncode = returncode
        self.output = output
        super().__init__(f"pulumi {' '.join(args)} failed (exit {returncode}):\n{output.strip()[-4000:]}")


def project_file(repo_project: Mapping[str, Any], project_dir: Path) -> dict[str, Any]:
    """The repository's Pulumi.yaml, re-pointed from ``project_dir`` at infra/ and the .venv."""
    project = dict(repo_project)
    project["main"] = os.path.relpath(REPO_ROOT / str(repo_project.get("main", "infra/")), project_dir) + "/"
    runtime = dict(project.get("runtime") or {})
    options = dict(runtime.get("options") or {})
    if "virtualenv" in options:
        # Absolute: the dynamic-provider plugin resolves it against the program dir (infra/), the
        # language host against the project dir; only an absolute path means the same to both.
        options["virtualenv"] = str(REPO_ROOT / str(options["virtualenv"]))
    runtime["options"] = options
    project["runtime"] = runtime
    return project


def policy_config(stack_config: Mapping[str, Any]) -> dict[str, Any]:
    """The pack's --policy-pack-config for a stack: the environment its config declares (model default: dev)."""
    raw = stack_config.get(f"{PROJECT}:environment", StackConfig.model_fields["environment"].default)
    return {ENVIRONMENT_POLICY: {"environment": str(raw)}}


def stack_file(repo_stack: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The repository's stack file, keeping the salt Pulumi wrote into the previous copy."""
    stack = {k: v for k, v in repo_stack.items() if k != "encryptionsalt"}
    if previous and previous.get("encryptionsalt"):
        stack["encryptionsalt"] = previous["encryptionsalt"]
    return stack


@dataclass(frozen=True)
class PulumiWorkspace:
    state: StateDirs
    stack: str = "dev"

    @property
    def project_dir(self) -> Path:
        return self.state.root / "project"

    @property
    def stack_path(self) -> Path:
        return self.project_dir / f"Pulumi.{self.stack}.yaml"

    def prepare(self) -> None:
        """Writes the project copy, the stack file and (once) the passphrase; selects the stack."""
        require_tools(*PULUMI_TOOLS)
        repo_stack_path = REPO_ROOT / f"Pulumi.{self.stack}.yaml"
        if not repo_stack_path.is_file():
            raise FileNotFoundError(f"no stack file {repo_stack_path}; create it (see README, 'Stack config')")
        self.project_dir.mkdir(parents=True, exist_ok=True)
        self.state.pulumi_backend.mkdir(parents=True, exist_ok=True)
        repo_project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
        _write_yaml(self.project_dir / "Pulumi.yaml", project_file(repo_project, self.project_dir))
        previous = yaml.safe_load(self.stack_path.read_text()) if self.stack_path.is_file() else None
        # Strictly first: the copy below is re-dumped by PyYAML, which would silently keep only the
        # last of two equal keys before pulumi ever saw the file.
        read_stack_file(repo_stack_path, stack=self.stack)
        _write_yaml(self.stack_path, stack_file(yaml.safe_load(repo_stack_path.read_text()) or {}, previous))
        if not self.state.passphrase_file.is_file():
            # The passphrase only guards this clone's local state; it never leaves .state/.
            fd = os.open(self.state.passphrase_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
        self.clear_stale_locks()
        self.run("stack", "select", "--create", "--secrets-provider", "passphrase", self.stack)

    def policy_args(self) -> list[str]:
        """``--policy-pack`` and its config file (written under .state/) for up and preview."""
        config = read_stack_file(REPO_ROOT / f"Pulumi.{self.stack}.yaml", stack=self.stack)
        path = self.state.root / f"policy-config.{self.stack}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(policy_config(config), indent=2) + "\n")
        return ["--policy-pack", str(POLICY_PACK), "--policy-pack-config", str(path)]

    def clear_stale_locks(self) -> list[Path]:
        """Removes backend locks whose pulumi process (on this host) no longer exists.

        An interrupted `make up` (Ctrl-C twice, a killed terminal) leaves its lock behind and every
        later command refuses to run; `pulumi cancel` does not exist for file backends.
        """
        removed = []
        for lock in sorted((self.state.pulumi_backend / ".pulumi" / "locks").rglob("*.json")):
            try:
                owner = json.loads(lock.read_text())
            except (OSError, ValueError):
                continue
            if is_stale_lock(owner, hostname=socket.gethostname()):
                lock.unlink(missing_ok=True)
                removed.append(lock)
        return removed

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        # The language host takes the first `python` on PATH: the project's venv must win.
        env["PATH"] = os.pathsep.join([str(VENV_BIN), str(TOOLS_BIN), env.get("PATH", "")])
        env.update(
            {
                "PULUMI_HOME": str(self.state.root / "pulumi-home"),
                "PULUMI_BACKEND_URL": self.state.pulumi_backend.as_uri(),
                "PULUMI_CONFIG_PASSPHRASE_FILE": str(self.state.passphrase_file),
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                "PULUMI_SKIP_CONFIRMATIONS": "true",
            }
        )
        env.pop("PULUMI_CONFIG_PASSPHRASE", None)
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return env

    def run(
        self, *args: str, kubeconfig: Path | None = None, stream: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Runs pulumi in the project copy; ``stream`` shows its own progress output live."""
        command = [str(TOOLS_BIN / "pulumi"), "--non-interactive", *args]
        pipe = None if stream else subprocess.PIPE
        proc = subprocess.run(
            command, cwd=self.project_dir, env=self.env(kubeconfig), text=True, stdout=pipe, stderr=pipe, check=False
        )
        if check and proc.returncode != 0:
            output = "(output shown above)" if stream else f"{proc.stdout}\n{proc.stderr}"
            raise PulumiError(list(args), proc.returncode, output)
        return proc

    def up(self, kubeconfig: Path | None, *, stream: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(
            "up",
            "--yes",
            "--skip-preview",
            "--stack",
            self.stack,
            *self.policy_args(),
            kubeconfig=kubeconfig,
            stream=stream,
        )

    def destroy(self, kubeconfig: Path | None, *, stream: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(
            "destroy", "--yes", "--skip-preview", "--stack", self.stack, kubeconfig=kubeconfig, stream=stream
        )

    def forget(self) -> None:
        """Removes the stack's record of resources (the cluster holding them was deleted)."""
        self.run("stack", "rm", "--force", "--yes", "--preserve-config", self.stack)

    def preview_steps(self, kubeconfig: Path | None) -> list[dict[str, Any]]:
        """`pulumi preview --json`: one entry per resource with its planned op (same, update, replace...)."""
        proc = self.run("preview", "--json", "--stack", self.stack, kubeconfig=kubeconfig)
        return list(json.loads(proc.stdout).get("steps", []))

    def outputs(self, *, show_secrets: bool = False) -> dict[str, Any]:
        args = ["stack", "output", "--json", "--stack", self.stack]
        if show_secrets:
            args.append("--show-secrets")
        return dict(json.loads(self.run(*args).stdout or "{}"))

    def set_config(self, path: str, value: str) -> None:
        """`pulumi config set --path` on the project copy (never the committed stack file)."""
        self.run("config", "set", "--path", "--stack", self.stack, path, value)


def is_stale_lock(owner: Mapping[str, Any], *, hostname: str) -> bool:
    """A lock taken on this host by a process that is gone; locks of other hosts are left alone."""
    if owner.get("hostname") != hostname or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _write_yaml(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(dict(document), sort_keys=False))
    tmp.replace(path)
