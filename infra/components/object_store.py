"""The platform's object store: buckets plus one least-privilege access key per consumer.

The ``minio`` kind installs charts/minio. The root password and every consumer's secret key are
generated here (``GeneratedPassword``) and reach the cluster only inside Kubernetes Secrets; the
chart's values name those Secrets and never carry a credential. Each consumer gets a Secret
``object-store-<consumer>`` with ``access-key``, ``secret-key``, ``endpoint`` and the bucket names,
so consumers never branch on the kind. The ``s3`` kind lives in infra/components/aws_object_store.py
with the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.charts import local_chart_release
from infra.components.credentials import credentials_secret
from infra.config import StackConfig
from infra.labels import standard_labels
from infra.passwords import GeneratedPassword

RELEASE = "minio"
PORT = 9000
ROOT_USER = "qframe-root"
ROOT_SECRET = "minio-root"  # noqa: S105 - a Secret's name, not a credential
# consumer -> (bucket keys of config.Buckets, access)
CONSUMERS: dict[str, tuple[tuple[str, ...], str]] = {
    "mlflow": (("mlflow_artifacts",), "readwrite"),
    "research": (("data_lake",), "readwrite"),
}
# Pods carrying this label are admitted to port 9000 by the chart's NetworkPolicy.
CLIENT_LABEL = {"qframe.io/object-store-client": "true"}


def consumer_secret_name(consumer: str) -> str:
    return f"object-store-{consumer}"


def endpoint_url(namespace: str) -> str:
    """The S3 endpoint of the ClusterIP Service (the chart names it after the release)."""
    return f"http://{RELEASE}.{namespace}.svc:{PORT}"


def access_key(consumer: str, namespace: str) -> str:
    """Deterministic, not secret: the secret key is what authenticates."""
    return f"{consumer}-{namespace}"


def bucket_names(cfg: StackConfig) -> dict[str, str]:
    return {
        "data_lake": cfg.object_store.buckets.data_lake,
        "mlflow_artifacts": cfg.object_store.buckets.mlflow_artifacts,
    }


def _require_minio(cfg: StackConfig) -> None:
    if cfg.object_store.kind != "minio":
        raise NotImplementedError(
            f"objectStore.kind {cfg.object_store.kind!r} is not handled here: this component builds 'minio' "
            "(charts/minio); the s3 variant is infra/components/aws_object_store.py"
        )


def build_minio_values(cfg: StackConfig, *, root_secret: str, consumer_secrets: dict[str, str]) -> dict[str, Any]:
    """Values for charts/minio: names of the Secrets holding credentials, never the credentials."""
    _require_minio(cfg)
    settings = cfg.object_store.minio
    buckets = bucket_names(cfg)
    return {
        "commonLabels": {**cfg.labels, "qframe.io/stack-namespace": cfg.namespace},
        "image": _image(cfg, "minio"),
        "toolsImage": _image(cfg, "tools"),
        "auth": {"existingSecret": root_secret},
        "buckets": [buckets["data_lake"], buckets["mlflow_artifacts"]],
        "versioning": True,
        "consumers": [
            {
                "name": name,
                "existingSecret": secret,
                "buckets": [buckets[key] for key in CONSUMERS[name][0]],
                "access": CONSUMERS[name][1],
            }
            for name, secret in consumer_secrets.items()
        ],
        "persistence": {"size": settings.storage},
        "resources": settings.resources.model_dump(),
        "networkPolicy": {"allowedClients": [{"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}]},
    }


def _image(cfg: StackConfig, image: str) -> dict[str, str]:
    tag = str(getattr(cfg.images.tags, image))
    digest = tag if tag.startswith("sha256:") else ""
    return {
        "repository": f"{cfg.images.registry}/{image}",
        # The schema needs a tag-shaped value even when the digest pins the image.
        "tag": "digest" if digest else tag,
        "digest": digest,
        "pullPolicy": cfg.images.pull_policy,
    }


@dataclass
class ObjectStoreArgs:
    config: StackConfig
    namespace: pulumi.Input[str]


class ObjectStore(pulumi.ComponentResource):
    """Buckets, an endpoint and one credentials Secret per consumer (MinIO in-cluster)."""

    endpoint: pulumi.Output[str]
    buckets: pulumi.Output[dict[str, str]]
    credentials_secrets: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = args.config
        _require_minio(cfg)  # before registering anything
        super().__init__("qframe:data:ObjectStore", name, None, opts)
        namespace = pulumi.Output.from_input(args.namespace)
        endpoint = namespace.apply(endpoint_url)
        buckets = bucket_names(cfg)
        # The data volume lives as long as the release; the credentials must never churn under it.
        child = pulumi.ResourceOptions(parent=self, protect=cfg.protect_stateful)
        labels = standard_labels(cfg, name="minio", component="credentials")

        root_password = GeneratedPassword(f"{name}-root-password", opts=child)
        root = credentials_secret(
            f"{name}-root",
            name=ROOT_SECRET,
            namespace=namespace,
            labels=labels,
            data=root_password.value.apply(lambda pw: {"root-user": ROOT_USER, "root-password": pw}),
            opts=child,
        )

        secrets: list[pulumi.Resource] = [root]
        names: dict[str, str] = {}
        for consumer, (keys, _access) in CONSUMERS.items():
            secret_key = GeneratedPassword(f"{name}-{consumer}-secret-key", length=40, opts=child)
            secret_name = consumer_secret_name(consumer)
            own = {key: buckets[key] for key in keys}
            data = pulumi.Output.all(namespace, secret_key.value).apply(_credentials_data(consumer, own))
            secrets.append(
                credentials_secret(
                    f"{name}-{consumer}",
                    name=secret_name,
                    namespace=namespace,
                    labels={**labels, "qframe.io/object-store-consumer": consumer},
                    data=data,
                    opts=child,
                )
            )
            names[consumer] = secret_name

        release = local_chart_release(
            f"{name}-release",
            chart="minio",
            release=RELEASE,
            namespace=namespace,
            values=build_minio_values(cfg, root_secret=ROOT_SECRET, consumer_secrets=names),
            description="MinIO object store",
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets, protect=cfg.protect_stateful),
        )

        self.release_name = release.name
        self.endpoint = endpoint
        self.buckets = pulumi.Output.from_input(buckets)
        self.credentials_secrets = pulumi.Output.from_input(names)
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "buckets": self.buckets,
                "credentials_secrets": self.credentials_secrets,
                "release_name": self.release_name,
            }
        )


def _credentials_data(consumer: str, buckets: dict[str, str]) -> Callable[[list[Any]], dict[str, str]]:
    """The keys of one consumer's Secret, from ``[namespace, secret key]`` (for Output.all(...).apply)."""

    def build(values: list[Any]) -> dict[str, str]:
        namespace, secret = str(values[0]), str(values[1])
        data = {
            "access-key": access_key(consumer, namespace),
            "secret-key": secret,
            "endpoint": endpoint_url(namespace),
        }
        data.update({f"bucket-{key.replace('_', '-')}": bucket for key, bucket in buckets.items()})
        return data

    return build
