"""Drives the real, pinned helm binary over the project's charts.

`helm` is the binary tools/install builds and links as .tools/bin/helm (never one from PATH, so the
pinned version is what gets tested). Nothing here needs the network: charts are local paths.

Besides running helm, this module holds the chart conventions from ARCHITECTURE.md that are about a
chart's files rather than about Kubernetes objects (those are in security.py).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tools.versions import pinned_versions

from . import security

REPO_ROOT = Path(__file__).resolve().parents[2]
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
DEFAULT_NAMESPACE = "qframe-test"
DEFAULT_RELEASE = "test"
HELM_TIMEOUT_SECONDS = 120.0


class HelmNotInstalledError(RuntimeError):
    """The pinned helm binary is not where tools/install puts it."""


class HelmError(RuntimeError):
    """helm exited non-zero; carries the command and its full output."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"helm {' '.join(args)} exited {returncode}\n--- stderr ---\n{stderr.strip()}\n"
            f"--- stdout ---\n{stdout.strip()}"
        )

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"


def helm_binary() -> Path:
    """The pinned helm, or HelmNotInstalledError telling how to get it."""
    if not (HELM.is_file() and os.access(HELM, os.X_OK)):
        version = pinned_versions().get("HELM_VERSION", "<pinned>")
        raise HelmNotInstalledError(
            f"helm {version} is not installed at {HELM}: run tools/install helm "
            "(builds it from the Go module proxy into ~/.cache/qframe-tools and links it there)"
        )
    return HELM


@functools.cache
def _helm_home() -> Path:
    # helm reads repositories, plugins and registry logins from its home directories; a private
    # empty home keeps a developer's ~/.config/helm from changing what the tests see.
    home = Path(tempfile.mkdtemp(prefix="qframe-helm-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def _helm_env() -> dict[str, str]:
    home = _helm_home()
    env = dict(os.environ)
    for var, sub in (("HELM_CONFIG_HOME", "config"), ("HELM_CACHE_HOME", "cache"), ("HELM_DATA_HOME", "data")):
        env[var] = str(home / sub)
    env.pop("KUBECONFIG", None)
    env["HELM_KUBECONTEXT"] = ""
    return env


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs the pinned helm with `args`; raises HelmError on a non-zero exit when `check`."""
    binary = helm_binary()
    argv = [str(a) for a in args]
    proc = subprocess.run(
        [str(binary), *argv],
        capture_output=True,
        text=True,
        env=_helm_env(),
        timeout=HELM_TIMEOUT_SECONDS,
        check=False,
    )
    if check and proc.returncode != 0:
        raise HelmError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def pinned_kube_version() -> str:
    """The pinned Kubernetes version (tools/versions.env KUBE_VERSION)."""
    return pinned_versions()["KUBE_VERSION"]


def discover_charts(root: Path = REPO_ROOT) -> list[Path]:
    """Every chart directory `root/charts/<name>/` that has a Chart.yaml, sorted by name."""
    return sorted(chart_yaml.parent for chart_yaml in (root / "charts").glob("*/Chart.yaml"))


def ci_values_files(chart: Path) -> list[Path]:
    """The chart's CI scenarios: `ci/*-values.yaml`, sorted."""
    return sorted((chart / "ci").glob("*-values.yaml"))


def lint(chart: Path, kube_version: str | None = None) -> list[str]:
    """`helm lint --strict` with the defaults and with each CI values file; returns helm's outputs
    and raises HelmError on the first failing run."""
    base = ["lint", "--strict", "--kube-version", kube_version or pinned_kube_version(), str(chart)]
    outputs = [helm(*base).stdout]
    outputs.extend(helm(*base, "--values", str(values)).stdout for values in ci_values_files(chart))
    return outputs


def parse_manifests(text: str) -> list[dict[str, Any]]:
    """The objects in a multi-document YAML stream; empty documents are dropped."""
    objects: list[dict[str, Any]] = []
    for document in yaml.safe_load_all(text):
        if document is None or document == {}:
            continue
        if not isinstance(document, dict):
            raise ValueError(f"rendered document is not a mapping: {document!r:.200}")
        if document.get("kind") == "List":
            objects.extend(item for item in document.get("items") or [] if item)
        else:
            objects.append(document)
    return objects


def render(
    chart: Path,
    values_file: Path | None = None,
    kube_version: str | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    release: str = DEFAULT_RELEASE,
    extra_args: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` of a chart at the pinned (or given) Kubernetes version, as a list of objects."""
    args: list[str] = [
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version or pinned_kube_version(),
    ]
    if values_file is not None:
        args += ["--values", str(values_file)]
    return parse_manifests(helm(*args, *extra_args).stdout)


def render_with_values(
    chart: Path,
    values: Mapping[str, Any],
    kube_version: str | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    release: str = DEFAULT_RELEASE,
) -> list[dict[str, Any]]:
    """Like render() with values given as a dict (e.g. a Pulumi helm Release's `values`)."""
    with tempfile.TemporaryDirectory(prefix="qframe-values-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        # JSON is YAML: it keeps strings such as "on" or "1.10" exactly as given.
        values_file.write_text(json.dumps(values), encoding="utf-8")
        return render(chart, values_file, kube_version, namespace=namespace, release=release)


# ---------------------------------------------------------------------------------------------
# Chart conventions (ARCHITECTURE.md "Charts conventions")
# ---------------------------------------------------------------------------------------------

REQUIRED_FILES = (
    "Chart.yaml",
    "values.yaml",
    "values.schema.json",
    "README.md",
    "templates/_helpers.tpl",
    "templates/_common.tpl",
    "templates/NOTES.txt",
)


def chart_convention_violations(chart: Path) -> list[str]:
    """File-level conventions: required files, Chart.yaml fields, a closed values schema."""
    found = [f"{chart.name}: {name} is missing" for name in REQUIRED_FILES if not (chart / name).is_file()]
    if (chart / "Chart.yaml").is_file():
        meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8")) or {}
        if meta.get("apiVersion") != "v2":
            found.append(f"{chart.name}: Chart.yaml apiVersion must be v2, is {meta.get('apiVersion')!r}")
        found.extend(
            f"{chart.name}: Chart.yaml {field} is missing"
            for field in ("name", "version", "appVersion")
            if not meta.get(field)
        )
        if meta.get("name") and meta.get("name") != chart.name:
            found.append(f"{chart.name}: Chart.yaml name {meta.get('name')!r} differs from its directory")
    if (chart / "values.schema.json").is_file():
        schema = json.loads((chart / "values.schema.json").read_text(encoding="utf-8"))
        if schema.get("additionalProperties") is not False:
            found.append(f"{chart.name}: values.schema.json must set additionalProperties: false at the top level")
    return found


def _mounted_config(pod_spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a pod mounts as a volume (projected included)."""
    mounted: set[tuple[str, str]] = set()
    for volume in pod_spec.get("volumes") or []:
        sources = [volume]
        sources += [source for source in (volume.get("projected") or {}).get("sources") or []]
        for source in sources:
            if (source.get("configMap") or {}).get("name"):
                mounted.add(("ConfigMap", source["configMap"]["name"]))
            secret = source.get("secret") or {}
            secret_name = secret.get("secretName") or secret.get("name")
            if secret_name:
                mounted.add(("Secret", str(secret_name)))
    return mounted


# Kinds whose pods are re-created from a template when the template changes (a bare Pod is not).
ROLLING_KINDS = frozenset(security.POD_SPEC_PATHS) - {"Pod", "PodTemplate"}


def checksum_violations(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Workloads that mount a ConfigMap/Secret rendered by the same chart must carry a `checksum/*`
    annotation on their pod template, so a config change rolls the pods instead of being ignored."""
    rendered = {(o.get("kind"), (o.get("metadata") or {}).get("name")) for o in objects}
    found: list[str] = []
    for obj in objects:
        if obj.get("kind") not in ROLLING_KINDS:
            continue
        for pod in security.pod_contexts(obj):
            mounted = sorted(m for m in _mounted_config(pod.spec) if m in rendered)
            annotations = pod.metadata.get("annotations") or {}
            if mounted and not any(str(key).startswith("checksum/") for key in annotations):
                names = ", ".join(f"{kind}/{name}" for kind, name in mounted)
                found.append(
                    f"{pod.where}: mounts {names} but its pod template has no checksum/ annotation, "
                    "so pods will not roll when that config changes"
                )
    return found


def render_by_name(
    chart: Path, values: Mapping[str, Any], *, namespace: str, release: str
) -> dict[tuple[str, str], dict[str, Any]]:
    """render_with_values() keyed by (kind, name), which is how chart unit tests look objects up."""
    objects = render_with_values(chart, values, namespace=namespace, release=release)
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def rejection_message(chart: Path, values: Mapping[str, Any], workdir: Path, *, release: str) -> str:
    """helm's error for values the chart's schema must refuse; fails the test if helm accepts them."""
    path = workdir / "values.yaml"
    path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
    proc = helm("template", release, chart, "--kube-version", pinned_kube_version(), "--values", path, check=False)
    assert proc.returncode != 0, f"helm accepted values the schema of {chart.name} should reject: {dict(values)}"
    return proc.stderr
