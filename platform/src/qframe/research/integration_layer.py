"""One object that wires the lake, catalog, feature store and compute settings for a research session.

``create_research_integration()`` is what a notebook calls first: it reads :class:`ResearchSettings`
(``QFRAME_*`` variables set by the platform images, or laptop defaults), opens the storage and the
catalog, and offers the feature pipeline and a status report. QFrame Core is optional: when its
package is importable the status says so, nothing else depends on it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import structlog
from qframe.research.data_lake.catalog import DataCatalog
from qframe.research.data_lake.feature_store import FeatureStore
from qframe.research.data_lake.storage import DataLakeStorage, storage_from_url
from qframe.research.features import compute_features
from qframe.research.redaction import redact
from qframe.research.settings import ResearchSettings

log = structlog.get_logger(__name__)

# Feature groups compute_research_features understands, and the built-in columns each one keeps.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "technical": ("rsi", "macd", "bb_"),
    "statistical": ("return", "log_return", "volatility", "zscore"),
    "regime": ("regime",),
}


class IntegrationError(ValueError):
    """The research integration was asked for something it cannot do; the message says what to change."""


@dataclass
class ResearchIntegration:
    """The live objects of one research session; build it with :func:`create_research_integration`."""

    settings: ResearchSettings
    storage: DataLakeStorage
    catalog: DataCatalog
    feature_store: FeatureStore
    backend_label: str
    _closed: bool = field(default=False, repr=False)

    def get_integration_status(self) -> dict[str, Any]:
        # Strategies load numba kernels; only a status request should pay for that.
        from qframe.research.backtesting.strategies import available_strategies  # noqa: PLC0415

        return {
            "qframe_core_available": importlib.util.find_spec("qframe.core") is not None,
            "data_lake_backend": self.backend_label,
            "data_lake_url": redact(self.settings.resolved_lake_url),
            "catalog_url": redact(self.settings.resolved_catalog_url),
            "feature_store_ready": not self._closed,
            "strategies_discovered": len(available_strategies()),
            "strategies": available_strategies(),
            "compute_backend": self.settings.compute_backend,
            "compute_backends_installed": {
                name: importlib.util.find_spec(module) is not None
                for name, module in (("dask", "distributed"), ("ray", "ray"))
            },
            "mlflow_tracking_uri": redact(self.settings.resolved_tracking_uri),
        }

    async def compute_research_features(
        self,
        data: pd.DataFrame,
        *,
        include_symbolic: bool = False,
        include_ml: bool = False,
        feature_groups: Sequence[str] = ("technical", "statistical", "regime"),
    ) -> pd.DataFrame:
        """The bars with the chosen built-in feature groups appended (no look-ahead, per symbol)."""
        return compute_research_features(
            data, include_symbolic=include_symbolic, include_ml=include_ml, feature_groups=feature_groups
        )

    def close(self) -> None:
        if not self._closed:
            self.catalog.close()
            self._closed = True

    def __enter__(self) -> ResearchIntegration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compute_research_features(
    data: pd.DataFrame,
    *,
    include_symbolic: bool = False,
    include_ml: bool = False,
    feature_groups: Sequence[str] = ("technical", "statistical", "regime"),
) -> pd.DataFrame:
    """Bars joined with the requested feature groups; symbolic/ML groups need QFrame Core and are refused."""
    unknown = sorted(set(feature_groups) - set(FEATURE_GROUPS))
    if unknown:
        raise IntegrationError(
            f"unknown feature group(s) {unknown}; choose from {sorted(FEATURE_GROUPS)} (feature_groups=[...])"
        )
    if include_symbolic or include_ml:
        raise IntegrationError(
            "symbolic and ML features come from QFrame Core, which is not installed in this environment; "
            "call with include_symbolic=False, include_ml=False"
        )
    features = compute_features(data)
    prefixes = tuple(prefix for group in feature_groups for prefix in FEATURE_GROUPS[group])
    keep = [column for column in features.columns if column.startswith(prefixes)]
    merged = data.merge(features[["timestamp", "symbol", *keep]], on=["timestamp", "symbol"], how="left")
    log.info("research features computed", rows=len(merged), groups=list(feature_groups), columns=len(keep))
    return merged


def create_research_integration(
    *,
    use_minio: bool = False,
    settings: ResearchSettings | None = None,
    **overrides: Any,
) -> ResearchIntegration:
    """Open the session's lake, catalog and feature store from settings (env, then keyword overrides).

    ``use_minio=True`` insists that the lake is an S3 API endpoint (QFRAME_LAKE_URL=s3://... with
    QFRAME_S3_ENDPOINT_URL), and fails instead of silently writing to local disk.
    """
    resolved = settings or ResearchSettings.from_env(**overrides)
    lake_url = resolved.resolved_lake_url
    if use_minio and not (lake_url.startswith("s3://") and resolved.s3_endpoint_url):
        raise IntegrationError(
            f"use_minio=True but the lake is {redact(lake_url)!r}; set QFRAME_LAKE_URL=s3://<bucket>/<prefix> and "
            "QFRAME_S3_ENDPOINT_URL=<MinIO endpoint>, or call with use_minio=False"
        )
    options: dict[str, Any] = {}
    if lake_url.startswith("s3://") and resolved.s3_endpoint_url:
        options["endpoint_url"] = resolved.s3_endpoint_url
    if lake_url.startswith("file://"):
        resolved.workdir.mkdir(parents=True, exist_ok=True)
    storage = storage_from_url(lake_url, **options)
    catalog = DataCatalog(resolved.resolved_catalog_url)
    label = "minio" if use_minio else lake_url.split("://", 1)[0].replace("file", "local")
    log.info("research integration ready", lake=redact(lake_url), backend=label)
    return ResearchIntegration(
        settings=resolved,
        storage=storage,
        catalog=catalog,
        feature_store=FeatureStore(storage, catalog),
        backend_label=label,
    )


def _redact(url: str) -> str:
    """The URL without a password, for status output."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def get_integration_status(integration: ResearchIntegration) -> dict[str, Any]:
    """Module-level spelling of :meth:`ResearchIntegration.get_integration_status` (the seed's name)."""
    return integration.get_integration_status()
