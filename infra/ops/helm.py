"""Helm through pyhelm3: our charts (metadata, strict lint, template) and the stack's live releases.

pyhelm3 drives the pinned ``helm`` binary (``.tools/bin/helm`` when tools/install linked it).
Two things pyhelm3's high-level API lacks are sent through its own ``Command.run`` instead of a
second subprocess layer: ``helm lint`` and the ``--kube-version`` our charts need offline (their
``kubeVersion: >=1.29`` refuses helm's built-in default of 1.20 when no cluster is asked).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyhelm3 import Client, Command, errors  # type: ignore[import-untyped]

from infra.ops.errors import OpsError
from infra.ops.stack import REPO_ROOT, ReleaseSpec

PINNED_HELM = REPO_ROOT / ".tools" / "bin" / "helm"
# pyhelm3 logs each failed helm command as a warning; the CLI reports the failure itself, once.
logging.getLogger("pyhelm3").addHandler(logging.NullHandler())
_OFFLINE_VERBS = ("template", "lint")
T = TypeVar("T")


def helm_executable() -> str:
    if PINNED_HELM.is_file() and os.access(PINNED_HELM, os.X_OK):
        return str(PINNED_HELM)
    found = shutil.which("helm")
    if found is None:
        raise OpsError(f"helm not found at {PINNED_HELM} nor on PATH", "run tools/install helm (or make setup)")
    return found


def pinned_kube_version() -> str:
    from tools.versions import pinned_versions

    return pinned_versions()["KUBE_VERSION"]


class _PinnedCommand(Command):  # type: ignore[misc]
    """pyhelm3's Command, rendering and linting at the pinned Kubernetes version."""

    def __init__(self, *, kube_version: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kube_version = kube_version

    async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
        if command and command[0] in _OFFLINE_VERBS:
            command = [*command, "--kube-version", self._kube_version]
        result: bytes = await super().run(command, input)
        return result


def _run(awaitable: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await awaitable

    return asyncio.run(wrapped())


def helm_error(exc: Exception, *, release: str = "", namespace: str = "") -> OpsError:
    """A pyhelm3 error as one line: missing release, unreachable cluster, RBAC, or helm's own first line."""
    stderr = exc.stderr.decode(errors="replace") if isinstance(exc, errors.Error) else str(exc)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    first = lines[0].removeprefix("Error: ").removeprefix("error: ") if lines else str(exc)
    lowered = stderr.lower()
    if isinstance(exc, errors.ReleaseNotFoundError) or "release: not found" in lowered:
        return OpsError(
            f"release {release!r} not found in namespace {namespace}", "list the releases with `qframe-ops releases`"
        )
    if "forbidden" in lowered:
        return OpsError(f"forbidden: {first}", "ask a cluster admin for RBAC on it, or use --context with more rights")
    if "kubernetes cluster unreachable" in lowered or isinstance(exc, errors.ConnectionError):
        return OpsError(
            f"cluster unreachable: {first}", "start it (`make up`), or point KUBECONFIG/--context at a running cluster"
        )
    return OpsError(f"helm: {first}")


@dataclass(frozen=True)
class ChartInfo:
    name: str
    version: str
    app_version: str
    kube_version: str
    description: str
    path: Path


class Helm:
    """The helm operations of the CLI; every method is synchronous for the commands' sake."""

    def __init__(self, *, context: str | None = None, kubeconfig: str | None = None) -> None:
        self.kube_version = pinned_kube_version()
        executable = helm_executable()
        command = _PinnedCommand(
            kube_version=self.kube_version,
            executable=executable,
            kubecontext=context,
            kubeconfig=Path(kubeconfig) if kubeconfig else None,
        )
        self.command = command
        self.client = Client(command=command, executable=executable)

    # -- charts (offline) ---------------------------------------------------------------------

    def chart(self, path: Path) -> ChartInfo:
        try:
            chart = _run(self.client.get_chart(path))
        except errors.Error as exc:
            raise helm_error(exc) from None
        meta = chart.metadata
        return ChartInfo(
            name=meta.name,
            version=str(meta.version),
            app_version=meta.app_version or "",
            kube_version=meta.kube_version or "",
            description=meta.description or "",
            path=path,
        )

    def lint(self, path: Path, values: Sequence[dict[str, Any]] = ()) -> tuple[bool, str]:
        """``helm lint --strict`` with the chart's defaults, or with each given values dict on top."""
        outputs: list[str] = []
        ok = True
        for one in [None, *values]:
            argv: list[Any] = ["lint", "--strict", path]
            data = None
            if one is not None:
                argv += ["--values", "-"]
                data = json.dumps(one).encode()
            try:
                outputs.append(_run(self.command.run(argv, data)).decode())
            except errors.Error as exc:
                ok = False
                outputs.append((exc.stdout + exc.stderr).decode(errors="replace"))
        return ok, "\n".join(outputs)

    def template(self, spec: ReleaseSpec) -> list[dict[str, Any]]:
        """The objects ``helm template`` renders for one release of the stack, hooks included."""

        async def render() -> list[dict[str, Any]]:
            chart = await self.client.get_chart(spec.chart)
            documents = await self.client.template_resources(chart, spec.release, spec.values, namespace=spec.namespace)
            return [doc for doc in documents if doc]

        try:
            return _run(render())
        except errors.Error as exc:
            raise helm_error(exc) from None

    # -- releases (live) ----------------------------------------------------------------------

    def releases(self, namespace: str) -> list[dict[str, Any]]:
        try:
            found = _run(
                self.client.list_release_definitions(
                    namespace=namespace,
                    include_deployed=True,
                    include_failed=True,
                    include_pending=True,
                    include_superseded=False,
                    sort_by_date=False,
                )
            )
        except errors.Error as exc:
            raise helm_error(exc, namespace=namespace) from None
        return sorted(found, key=lambda r: r["name"])

    def history(self, release: str, namespace: str) -> list[dict[str, Any]]:
        try:
            found: list[dict[str, Any]] = _run(self.command.history(release, namespace=namespace))
        except errors.Error as exc:
            raise helm_error(exc, release=release, namespace=namespace) from None
        return found

    def rollback(self, release: str, namespace: str, revision: int | None) -> dict[str, Any]:
        """Rolls back (to ``revision`` or the previous one), waits, and returns the new current revision."""
        from pyhelm3.models import Release  # type: ignore[import-untyped]

        async def go() -> Any:
            handle = Release(self.command, name=release, namespace=namespace)
            # The release must exist before helm is asked to roll it back (a clear error otherwise).
            await handle.current_revision()
            return await handle.rollback(revision, wait=True, timeout="5m")

        try:
            current = _run(go())
        except errors.Error as exc:
            raise helm_error(exc, release=release, namespace=namespace) from None
        return {
            "release": release,
            "namespace": namespace,
            "revision": current.revision,
            "status": str(current.status.value),
            "description": current.description or "",
        }
