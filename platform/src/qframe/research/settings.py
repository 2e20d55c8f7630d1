"""Where the research tools find the lake, the catalog, MLflow and the compute cluster.

One closed model, read from ``QFRAME_*`` environment variables (the platform images set them from
the cluster's Secrets and ConfigMaps) with laptop defaults under a work directory, so the same
notebook or CLI call works on a laptop and in JupyterHub. Nothing is read at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
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
    kafka_bootstrap_servers: str | None = Field(default=None, description="host:port[,host:port]")
    kafka_username: str | None = Field(default=None, description="SASL user (the platform's Secret kafka-<consumer>)")
    kafka_password: SecretStr | None = Field(default=None, description="SASL password; never printed")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        default=None, description="default: SASL_PLAINTEXT with a username, else PLAINTEXT"
    )
    kafka_ssl_ca_location: str | None = Field(default=None, description="CA bundle for SASL_SSL brokers")

    @model_validator(mode="after")
    def _kafka_credentials_complete(self) -> ResearchSettings:
        protocol = self.resolved_kafka_security_protocol
        if (self.kafka_username is None) != (self.kafka_password is None):
            missing = "KAFKA_PASSWORD" if self.kafka_password is None else "KAFKA_USERNAME"
            raise ValueError(f"{ENV_PREFIX}{missing} is unset: a Kafka login needs both a username and a password")
        if protocol.startswith("SASL") and self.kafka_username is None:
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={protocol} needs {ENV_PREFIX}KAFKA_USERNAME and "
                f"{ENV_PREFIX}KAFKA_PASSWORD"
            )
        if protocol == "PLAINTEXT" and self.kafka_username is not None:
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL=PLAINTEXT would send no login; unset it or use SASL_PLAINTEXT"
            )
        return self

    @property
    def resolved_kafka_security_protocol(self) -> str:
        if self.kafka_security_protocol is not None:
            return self.kafka_security_protocol
        return "SASL_PLAINTEXT" if self.kafka_username is not None else "PLAINTEXT"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings that authenticate a producer, consumer or admin client (no bootstrap servers:
        callers pass those, usually ``kafka_bootstrap_servers``)."""
        protocol = self.resolved_kafka_security_protocol
        config = {"security.protocol": protocol}
        if self.kafka_username is not None and self.kafka_password is not None:
            config.update(
                {
                    "sasl.mechanisms": self.kafka_sasl_mechanism,
                    "sasl.username": self.kafka_username,
                    "sasl.password": self.kafka_password.get_secret_value(),
                }
            )
        if self.kafka_ssl_ca_location is not None:
            config["ssl.ca.location"] = self.kafka_ssl_ca_location
        return config

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
                # A cross-field rule (empty loc) names its variables itself.
                f"{ENV_PREFIX}{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
                if error["loc"]
                else str(error["msg"]).removeprefix("Value error, ")
                for error in exc.errors()
            )
            raise SettingsError(f"research settings are invalid: {problems}. Fix the variable or unset it.") from exc
