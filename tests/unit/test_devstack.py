"""Pure parts of `make up`: cluster objects, the project copy, lock handling, target choice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.k8s_schema import schema_errors
from tools.devstack.cli import wants_local_cluster
from tools.devstack.cluster import (
    MANAGED_LABEL,
    STORAGE_CLASS,
    kwokctl_config,
    node_manifest,
    released_volume_patches,
    storage_class_manifest,
    volume_pool_manifests,
)
from tools.devstack.paths import MissingToolError, StateDirs, require_tools
from tools.devstack.pulumi_cli import PulumiWorkspace, is_stale_lock, project_file, stack_file
from tools.paths import REPO_ROOT
from tools.versions import pinned_versions

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("environ", "local"),
    [
        ({}, True),
        ({"KUBECONFIG": ""}, True),
        ({"KUBECONFIG": "/home/me/.kube/eks"}, False),
        ({"KUBECONFIG": "/home/me/.kube/eks", "QFRAME_CLUSTER": "local"}, True),
    ],
)
def test_cluster_choice_follows_kubeconfig(environ: dict[str, str], local: bool) -> None:
    assert wants_local_cluster(environ) is local


def test_cluster_objects_are_valid_kubernetes_objects() -> None:
    kube = pinned_versions()["KUBE_VERSION"]
    objects = [node_manifest("n0"), storage_class_manifest(), *volume_pool_manifests(3)]
    assert [e for o in objects for e in schema_errors(o, kube)] == []


def test_kwok_binds_to_loopback_only() -> None:
    assert kwokctl_config()["options"]["bindAddress"] == "127.0.0.1"


def test_volume_pool_serves_the_default_storage_class() -> None:
    volumes = volume_pool_manifests(4)
    assert len({v["metadata"]["name"] for v in volumes}) == 4
    assert {v["spec"]["storageClassName"] for v in volumes} == {STORAGE_CLASS}
    assert storage_class_manifest()["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_only_released_pool_volumes_are_reclaimed() -> None:
    def pv(name: str, phase: str, ours: bool = True) -> dict[str, object]:
        labels = {MANAGED_LABEL: "true"} if ours else {}
        return {"metadata": {"name": name, "labels": labels}, "status": {"phase": phase}}

    volumes = [pv("a", "Released"), pv("b", "Bound"), pv("c", "Available"), pv("d", "Released", ours=False)]
    assert released_volume_patches(volumes) == ["a"]


def test_project_copy_points_back_at_the_repository(tmp_path: Path) -> None:
    project_dir = tmp_path / "state" / "project"
    project = project_file(
        {
            "name": "qframe-research",
            "main": "infra/",
            "runtime": {"name": "python", "options": {"virtualenv": ".venv"}},
        },
        project_dir,
    )
    assert (project_dir / project["main"]).resolve() == REPO_ROOT / "infra"
    assert project["runtime"]["options"]["virtualenv"] == str(REPO_ROOT / ".venv")
    assert project["name"] == "qframe-research"


def test_stack_copy_takes_config_from_the_repo_and_keeps_the_salt() -> None:
    repo = {"config": {"qframe-research:namespace": "qframe"}}
    previous = {"config": {"qframe-research:namespace": "old"}, "encryptionsalt": "v1:abc"}
    assert stack_file(repo, previous) == {"config": {"qframe-research:namespace": "qframe"}, "encryptionsalt": "v1:abc"}
    assert stack_file(repo, None) == repo


def test_stale_lock_detection() -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    here = socket.gethostname()
    assert is_stale_lock({"pid": int(gone.stdout), "hostname": here}, hostname=here)
    assert not is_stale_lock({"pid": os.getpid(), "hostname": here}, hostname=here)
    assert not is_stale_lock({"pid": int(gone.stdout), "hostname": "elsewhere"}, hostname=here)


def test_stale_locks_are_removed_live_ones_kept(tmp_path: Path) -> None:
    workspace = PulumiWorkspace(StateDirs(tmp_path))
    locks = tmp_path / "pulumi" / ".pulumi" / "locks" / "organization" / "qframe-research" / "dev"
    locks.mkdir(parents=True)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = locks / "stale.json"
    live = locks / "live.json"
    stale.write_text(f'{{"pid": {int(gone.stdout)}, "hostname": "{socket.gethostname()}"}}')
    live.write_text(f'{{"pid": {os.getpid()}, "hostname": "{socket.gethostname()}"}}')
    assert workspace.clear_stale_locks() == [stale]
    assert live.exists()


def test_missing_tools_are_named_with_the_install_step(tmp_path: Path) -> None:
    (tmp_path / "kwok").write_text("#!/bin/sh\n")
    (tmp_path / "kwok").chmod(0o755)
    with pytest.raises(MissingToolError) as caught:
        require_tools("kubectl", "pulumi", "kwok", "pulumi-resource-kubernetes", bin_dir=tmp_path)
    message = str(caught.value)
    assert "missing pinned tools: kubectl, pulumi, pulumi-resource-kubernetes" in message
    assert "tools/install kube pulumi pulumi-kubernetes" in message


def test_present_tools_resolve_to_the_bin_dir(tmp_path: Path) -> None:
    (tmp_path / "kwok").write_text("#!/bin/sh\n")
    (tmp_path / "kwok").chmod(0o755)
    assert require_tools("kwok", bin_dir=tmp_path) == {"kwok": tmp_path / "kwok"}
