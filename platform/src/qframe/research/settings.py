"""Where the research tools find the lake, the catalog, MLflow and the compute cluster.

One closed model, read from ``QFRAME_*`` environment variables (the platform images set them from
the cluster's Secrets and ConfigMaps) with laptop defaults under a work directory, so the same
notebook or CLI call works on a laptop and in JupyterHub. Nothing is read at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from qframe.research.backend_names import BACKEND_NAMES, BackendName

__all__ = ["BACKEND_NAMES", "BackendName", "ResearchSettings", "SettingsError"]

ENV_PREFIX = "QFRAME_"
DEFAULT_WORKDIR = ".qframe"


class SettingsError(ValueError):
    """A QFRAME_* variable has a value the platform cannot use; the message names it and the fix."""


class ResearchSettings(BaseModel):
    """Connection settings for one research session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workdir: Path = Field(default=Path(DEFAULT_WORKDIR), description="laptop defaults live under this directory")
    lake_url: str | None = Field(default=None, description="file:///..., s3://bucket/prefix or memory://")
    catalog_url: str | None = Field(default=None, description="SQLAlchemy URL: sqlite:///... or postgresql+psycopg://")
    mlflow_tracking_uri: str | None = Field(default=None, description="http(s)://mlflow... or a local sqlite:///")
    compute_backend: BackendName = "auto"
    dask_address: str | None = None
    ray_address: str | None = None
    s3_endpoint_url: str | None = Field(default=None, description="MinIO or another S3 API; unset for AWS")

    @property
    def resolved_lake_url(self) -> str:
        return self.lake_url or (self.workdir.resolve() / "lake").as_uri()

    @property
    def resolved_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{self.workdir.resolve() / 'catalog.db'}"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.workdir.resolve() / 'mlflow.db'}"

    @property
    def compute_address(self) -> str | None:
        if self.compute_backend == "ray":
            return self.ray_address
        if self.compute_backend == "dask":
            return self.dask_address
        return self.dask_address or self.ray_address

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ResearchSettings:
        """Settings from ``QFRAME_<FIELD>`` variables (``MLFLOW_TRACKING_URI`` too), then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"{ENV_PREFIX}{name.upper()}"
            if env.get(key):
                values[name] = env[key]
        if "mlflow_tracking_uri" not in values and env.get("MLFLOW_TRACKING_URI"):
            values["mlflow_tracking_uri"] = env["MLFLOW_TRACKING_URI"]
        values.update({key: value for key, value in overrides.items() if value is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
                for error in exc.errors()
            )
            raise SettingsError(f"research settings are invalid: {problems}. Fix the variable or unset it.") from exc
