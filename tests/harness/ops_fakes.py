"""Recordings of what a real cluster answered `qframe-ops`, and fakes that replay them.

The e2e tier (tests/e2e/test_ops_live.py, QFRAME_RECORD_OPS=1) wraps the real Kubernetes API and
helm in the recorders below and writes one JSON file per scenario into tests/fixtures/ops/; the
unit tier loads a file and hands the CLI a ``RecordedKubeApi`` and ``RecordedHelm`` built from it.
A request the recording does not hold fails the test naming it (no made-up answers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic.alias_generators import to_camel

from infra.config import PROJECT, ImageTags
from infra.image_tags import IMAGE_TAGS
from infra.offline import REPO_ROOT
from infra.ops.errors import OpsError
from infra.ops.kube import RecordedKubeApi, RecordingKubeApi

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "ops"


class RecordingHelm:
    """The CLI's live helm calls (release list), recorded; offline chart work is not cluster state."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.responses: dict[str, Any] = {}

    def releases(self, namespace: str) -> list[dict[str, Any]]:
        key = f"releases {namespace}"
        try:
            found: list[dict[str, Any]] = self._inner.releases(namespace)
        except OpsError as exc:
            self.responses[key] = {"error": exc.message, "fix": exc.fix}
            raise
        self.responses[key] = {"result": found}
        return found

    def __getattr__(self, name: str) -> Any:
        # Offline chart work (template, lint, chart metadata) runs for real, unrecorded.
        return getattr(self._inner, name)


class RecordedHelm:
    def __init__(self, responses: dict[str, Any]) -> None:
        self._responses = responses

    def releases(self, namespace: str) -> list[dict[str, Any]]:
        key = f"releases {namespace}"
        if key not in self._responses:
            raise KeyError(f"no recorded helm answer for {key}; recorded: {sorted(self._responses)}")
        answer = self._responses[key]
        if "error" in answer:
            raise OpsError(answer["error"], answer["fix"])
        found: list[dict[str, Any]] = answer["result"]
        return found


def slim(answer: Any) -> Any:
    """An API answer without what no qframe-ops command reads and what makes a recording megabytes:
    every object's ``managedFields`` and the CRDs' OpenAPI schemas (doctor only asks which are served).
    On a real node the CRD list alone was 5 MB of the doctor recording."""
    if isinstance(answer, list):
        return [slim(item) for item in answer]
    if not isinstance(answer, dict):
        return answer
    out = {key: slim(value) for key, value in answer.items() if key != "managedFields"}
    spec = out.get("spec")
    # A CRD by shape: list answers carry no kind on their items.
    if isinstance(spec, dict) and {"group", "names", "versions"} <= spec.keys():
        for version in spec["versions"] or []:
            version.pop("schema", None)
    return out


def save_recording(
    path: Path, apis: Sequence[RecordingKubeApi], helms: Sequence[RecordingHelm], argv: Sequence[str]
) -> None:
    kube: dict[str, Any] = {}
    for api in apis:
        kube.update(slim(api.responses))
    helm: dict[str, Any] = {}
    for one in helms:
        helm.update(one.responses)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The images the cluster ran: every platform change re-tags the notebook image, which the hub's
    # config names, so a replay renders with these (stack_as_recorded) rather than today's tags.
    document = {"argv": list(argv), "kube": kube, "helm": helm, "image_tags": dict(IMAGE_TAGS)}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def stack_as_recorded(scenario: str, stack: str, directory: Path) -> Path:
    """``Pulumi.<stack>.yaml`` with the image tags the recorded cluster ran, written into ``directory``."""
    document = json.loads((RECORDINGS / f"{scenario}.json").read_text(encoding="utf-8"))
    config = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    fields = ImageTags.model_fields
    tags = {to_camel(name.replace("-", "_")): tag for name, tag in document["image_tags"].items()}
    images = config["config"].setdefault(f"{PROJECT}:images", {})
    images["tags"] = {key: tag for key, tag in tags.items() if any(f.alias == key for f in fields.values())}
    path = directory / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def load_recording(scenario: str) -> tuple[RecordedKubeApi, RecordedHelm, list[str]]:
    document = json.loads((RECORDINGS / f"{scenario}.json").read_text(encoding="utf-8"))
    return RecordedKubeApi(document["kube"]), RecordedHelm(document["helm"]), document["argv"]
