"""The ``minio`` object store: charts/minio plus one least-privilege access key per consumer.

The root password and every consumer's secret key are generated here (``GeneratedPassword``) and
reach the cluster only inside Kubernetes Secrets; the chart's values name those Secrets and never
carry a credential. Each consumer gets a Secret ``object-store-<consumer>`` with ``access-key``,
``secret-key``, ``endpoint`` and the bucket names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.charts import local_chart_release
from infra.components.credentials import credentials_secret
from infra.components.object_store import CLIENT_LABEL, bucket_names, consumer_secret_name
from infra.config import Buckets, MinioSettings
from infra.images import ImageRef
from infra.passwords import GeneratedPassword
from infra.scope import Scope

RELEASE = "minio"
PORT = 9000
ROOT_USER = "qframe-root"
ROOT_SECRET = "minio-root"  # noqa: S105 - a Secret's name, not a credential
# consumer -> (bucket keys it may use, access)
CONSUMERS: dict[str, tuple[tuple[str, ...], str]] = {
    "mlflow": (("mlflow_artifacts",), "readwrite"),
    "research": (("data_lake",), "readwrite"),
    "notebooks": (("data_lake",), "readwrite"),
}


def endpoint_url(namespace: str) -> str:
    """The S3 endpoint of the ClusterIP Service (the chart names it after the release)."""
    return f"http://{RELEASE}.{namespace}.svc:{PORT}"


def access_key(consumer: str, namespace: str) -> str:
    """Deterministic, not secret: the secret key is what authenticates."""
    return f"{consumer}-{namespace}"


def build_values(
    *,
    scope: Scope,
    buckets: Buckets,
    settings: MinioSettings,
    image: ImageRef,
    init_image: ImageRef,
    root_secret: str,
    consumer_secrets: Mapping[str, str],
) -> dict[str, Any]:
    """Values for charts/minio: names of the Secrets holding credentials, never the credentials."""
    names = bucket_names(buckets)
    return {
        "commonLabels": scope.chart_labels(),
        "image": image.chart_values(),
        "auth": {"existingSecret": root_secret},
        "buckets": list(names.values()),
        "versioning": True,
        "consumers": [
            {
                "name": name,
                "existingSecret": secret,
                "buckets": [names[key] for key in CONSUMERS[name][0]],
                "access": CONSUMERS[name][1],
            }
            for name, secret in consumer_secrets.items()
        ],
        "persistence": {"size": settings.storage},
        "resources": settings.resources.model_dump(),
        "initJob": {"image": init_image.chart_values()},
        "networkPolicy": {"allowedClients": [{"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}]},
    }


@dataclass
class MinioObjectStoreArgs:
    namespace: pulumi.Input[str]
    """The Tenancy's namespace output: children wait for the namespace to exist."""
    scope: Scope
    buckets: Buckets
    settings: MinioSettings
    image: ImageRef
    init_image: ImageRef
    """Runs the bucket and access-key init Job (python3, boto3, the MinIO SDK)."""


class MinioObjectStore(pulumi.ComponentResource):
    """Buckets, an endpoint and one credentials Secret per consumer (MinIO in-cluster)."""

    endpoint: pulumi.Output[str]
    buckets: pulumi.Output[dict[str, str]]
    credentials_secrets: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: MinioObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token predates the variants' split; changing it would replace deployed stacks.
        super().__init__("qframe:data:ObjectStore", name, None, opts)
        scope = args.scope
        namespace = pulumi.Output.from_input(args.namespace)
        buckets = bucket_names(args.buckets)
        # The data volume lives as long as the release; the credentials must never churn under it.
        child = pulumi.ResourceOptions(parent=self, protect=scope.protect)
        labels = scope.object_labels("minio", component="credentials")

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
            values=build_values(
                scope=scope,
                buckets=args.buckets,
                settings=args.settings,
                image=args.image,
                init_image=args.init_image,
                root_secret=ROOT_SECRET,
                consumer_secrets=names,
            ),
            description="MinIO object store",
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets, protect=scope.protect),
        )

        self.release_name = release.name
        self.endpoint = namespace.apply(endpoint_url)
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
