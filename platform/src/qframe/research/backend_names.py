"""The names a researcher picks a compute backend by (``QFRAME_COMPUTE_BACKEND``, ``--backend``).

Kept apart from ``settings`` (pydantic) and ``backtesting.backends`` (the ``ComputeBackend``
implementations) so that both can import it without loading the other: workers import the
backends and should not pay for the settings model.
"""

from __future__ import annotations

from typing import Literal, get_args

BackendName = Literal["auto", "sequential", "dask", "ray"]
BACKEND_NAMES: tuple[BackendName, ...] = get_args(BackendName)
