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


def save_recording(
    path: Path, apis: Sequence[RecordingKubeApi], helms: Sequence[RecordingHelm], argv: Sequence[str]
) -> None:
    kube: dict[str, Any] = {}
    for api in apis:
        kube.update(api.responses)
    helm: dict[str, Any] = {}
    for one in helms:
        helm.update(one.responses)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"argv": list(argv), "kube": kube, "helm": helm}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load_recording(scenario: str) -> tuple[RecordedKubeApi, RecordedHelm, list[str]]:
    document = json.loads((RECORDINGS / f"{scenario}.json").read_text(encoding="utf-8"))
    return RecordedKubeApi(document["kube"]), RecordedHelm(document["helm"]), document["argv"]
