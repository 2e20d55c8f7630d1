"""The operators' CRDs are the pinned upstream files, extracted by tools/crds.py, never retyped."""

from __future__ import annotations

import filecmp
import importlib.metadata
from pathlib import Path

import pytest

from infra.components.operators import crds
from tools import crds as extractor
from tools.versions import pinned_versions

pytestmark = pytest.mark.unit


def test_dask_crds_are_the_files_of_the_locked_wheel() -> None:
    version, source = extractor.dask_source()
    assert version == importlib.metadata.version("dask-kubernetes") == crds.pinned_version(crds.DASK)
    extracted = crds.crd_files(crds.DASK)
    assert [p.name for p in extracted] == sorted(p.name for p in source.glob("*.yaml"))
    for path in extracted:
        assert filecmp.cmp(path, source / path.name, shallow=False), path.name


def test_kuberay_crds_are_the_module_crd_bases_at_the_pinned_version() -> None:
    version, source = extractor.kuberay_source()
    assert version == pinned_versions()["KUBERAY_VERSION"] == crds.pinned_version(crds.KUBERAY)
    assert source.parts[-3:] == ("config", "crd", "bases")
    assert f"ray-operator@{version}" in str(source)
    extracted = crds.crd_files(crds.KUBERAY)
    assert [p.name for p in extracted] == sorted(p.name for p in source.glob("*.yaml"))
    for path in extracted:
        assert filecmp.cmp(path, source / path.name, shallow=False), path.name


def test_every_kind_the_stack_creates_has_a_crd() -> None:
    kinds = {crd["spec"]["names"]["kind"] for op in (crds.DASK, crds.KUBERAY) for crd in crds.load_crds(op)}
    assert {
        "DaskCluster",
        "DaskWorkerGroup",
        "DaskAutoscaler",
        "DaskJob",
        "RayCluster",
        "RayJob",
        "RayService",
    } <= kinds
    assert crds.crd_schema(crds.DASK, "DaskAutoscaler")["properties"]["spec"]["required"] == [
        "cluster",
        "minimum",
        "maximum",
    ]


def test_copy_writes_the_files_and_their_version(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.yaml").write_text("kind: CustomResourceDefinition\n")
    (source / "README.md").write_text("not a CRD\n")
    dest = extractor.copy_crds("op", "1.2.3", source, dest_root=tmp_path / "out")
    assert sorted(p.name for p in dest.iterdir()) == ["VERSION", "a.yaml"]
    assert (dest / "VERSION").read_text() == "1.2.3\n"
    # A second extraction replaces the first, leaving nothing stale behind.
    (source / "a.yaml").unlink()
    (source / "b.yaml").write_text("kind: CustomResourceDefinition\n")
    extractor.copy_crds("op", "1.2.4", source, dest_root=tmp_path / "out")
    assert sorted(p.name for p in dest.iterdir()) == ["VERSION", "b.yaml"]


def test_stale_or_missing_crds_stop_the_program_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crds, "CRDS_DIR", tmp_path)
    with pytest.raises(crds.CrdsMissingError, match=r"not extracted .* run `tools/install crds`"):
        crds.crd_files(crds.KUBERAY)
    (tmp_path / "kuberay").mkdir()
    (tmp_path / "kuberay" / "VERSION").write_text("v0.0.1\n")
    (tmp_path / "kuberay" / "x.yaml").write_text("{}\n")
    with pytest.raises(crds.CrdsMissingError, match=r"holds the kuberay v0.0.1 CRDs but v\d+\.\d+\.\d+ is pinned"):
        crds.crd_files(crds.KUBERAY)


def test_the_program_stops_with_the_fix_when_crds_are_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi  # noqa: PLC0415

    from infra.offline import REPO_ROOT, run_program  # noqa: PLC0415

    monkeypatch.setattr(crds, "CRDS_DIR", tmp_path)
    with pytest.raises(pulumi.RunError, match=r"run `tools/install crds`") as caught:
        run_program(REPO_ROOT / "Pulumi.dev.yaml")
    assert "Traceback" not in str(caught.value)
    # A stack that leaves both operators to the cluster needs no extracted CRDs.
    run = run_program(
        REPO_ROOT / "Pulumi.dev.yaml", overrides={"dask": {"installOperator": False}, "ray": {"installOperator": False}}
    )
    assert any(r.type == "kubernetes:ray.io/v1:RayCluster" for r in run.resources)
