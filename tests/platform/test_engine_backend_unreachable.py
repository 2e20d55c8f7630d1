"""A cluster address nobody answers on: the engine falls back to sequential quickly and says so once."""

from __future__ import annotations

import socket
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog
from qframe.research.backtesting.backends import resolve_backend

pytestmark = pytest.mark.services


def _closed_port() -> int:
    # Bind then close: nothing listens on the port afterwards, so a connect is refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["log_level"] == "warning"]


@pytest.mark.parametrize(("backend", "scheme"), [("dask", "tcp://"), ("ray", "ray://"), ("auto", "ray://")])
def test_unreachable_cluster_falls_back_to_sequential(backend: str, scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    with structlog.testing.capture_logs() as logs:
        resolution = resolve_backend(backend, address=address, connect_timeout=2.0)
    elapsed = time.perf_counter() - started
    try:
        assert resolution.backend.name == "sequential"
        expected = "ray" if scheme == "ray://" else "dask"
        assert [name for name, _ in resolution.skipped] == [expected]
        (warning,) = _warnings(logs)
        assert address in str(warning["reasons"])
        assert "not reachable" in str(warning["reasons"])
        assert warning["running_on"] == "sequential"
        # The point of the probe: no half-minute client retry loop before the fallback.
        assert elapsed < 15.0
    finally:
        resolution.backend.close()
