"""Backend resolution: bad options are refused up front; a missing library falls back, logged once."""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog
from qframe.research.backtesting.backends import (
    BackendResolution,
    DaskBackend,
    RayBackend,
    SequentialBackend,
    resolve_backend,
)

pytestmark = pytest.mark.unit


def _warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["log_level"] == "warning"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compute_backend": "spark"}, "unknown compute_backend 'spark'; choose one of auto, sequential, dask, ray"),
        ({"compute_backend": "dask", "max_workers": 0}, "max_workers must be at least 1"),
        ({"compute_backend": "sequential", "address": "tcp://127.0.0.1:8786"}, "drop one of them"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(kwargs: dict[str, object], message: str) -> None:
    with structlog.testing.capture_logs() as logs, pytest.raises(ValueError, match=message):
        resolve_backend(**kwargs)  # type: ignore[arg-type]
    assert logs == []


def test_sequential_needs_no_fallback_and_logs_nothing() -> None:
    with structlog.testing.capture_logs() as logs:
        resolution = resolve_backend("sequential")
    assert isinstance(resolution.backend, SequentialBackend)
    assert not resolution.fell_back
    assert logs == []


def test_dask_not_installed_falls_back_to_sequential_with_one_clear_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry in sys.modules makes `import distributed` raise ImportError, as on an image without it.
    monkeypatch.setitem(sys.modules, "distributed", None)
    with structlog.testing.capture_logs() as logs:
        resolution = resolve_backend("dask", max_workers=2)
    assert isinstance(resolution, BackendResolution)
    assert resolution.backend.name == "sequential"
    assert [name for name, _ in resolution.skipped] == ["dask"]
    (warning,) = _warnings(logs)
    assert warning["requested"] == "dask"
    assert warning["running_on"] == "sequential"
    assert "dask.distributed is not installed" in str(warning["reasons"])
    assert "'dask' backend unavailable" in str(warning["message"])
    assert "running on 'sequential' instead" in str(warning["message"])


def test_auto_with_neither_library_tries_dask_then_ray_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "ray", None)
    with structlog.testing.capture_logs() as logs:
        resolution = resolve_backend("auto")
    assert resolution.backend.name == "sequential"
    assert [name for name, _ in resolution.skipped] == ["dask", "ray"]
    (warning,) = _warnings(logs)
    assert warning["unavailable"] == ["dask", "ray"]
    assert "ray is not installed" in str(warning["reasons"])


def test_ray_not_installed_falls_back_to_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with structlog.testing.capture_logs() as logs:
        resolution = resolve_backend("ray", max_workers=1)
    assert resolution.backend.name == "sequential"
    assert len(_warnings(logs)) == 1


def test_cluster_backends_used_before_start_say_so() -> None:
    with pytest.raises(RuntimeError, match="the Dask backend is not started"):
        _ = DaskBackend().client
    with pytest.raises(RuntimeError, match="the Ray backend is not started"):
        _ = RayBackend().n_workers
