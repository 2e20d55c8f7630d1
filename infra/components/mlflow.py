"""MLflow tracking server: charts/mlflow wired to the stack's Postgres and object store.

The backend store login comes only from the Postgres consumer Secret ``postgres-mlflow`` (the chart
assembles the URI inside the pod), the basic-auth app's store from its own database's Secret
``postgres-mlflow-auth``, artifacts go through the server (``--serve-artifacts``) with the
object store's ``mlflow`` consumer key (or the IAM role on S3), and the auth app's admin password
and Flask secret key are generated here into the Secret ``mlflow-auth``. Values name Secrets, never
carry a credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.charts import local_chart_release
from infra.components import object_store as store_names
from infra.components import postgres as postgres_names
from infra.components.credentials import credentials_secret
from infra.components.object_store import minio
from infra.components.postgres import in_cluster
from infra.config import MlflowSettings
from infra.images import ImageRef
from infra.passwords import GeneratedPassword
from infra.scope import Scope

RELEASE = "mlflow"
PORT = 5000
AUTH_SECRET = "mlflow-auth"  # noqa: S105 - a Secret's name, not a credential
# The Postgres consumer (own database and login) holding the basic-auth app's users and permissions.
AUTH_DB_CONSUMER = "mlflow-auth"
# Pods carrying this label are admitted to the tracking server by the chart's NetworkPolicy.
CLIENT_LABEL = {"qframe.io/mlflow-client": "true"}
# MLflow 3.17's server advertises presigned multipart transfers whenever its artifact store is S3,
# and clients then fetch artifacts straight from the bucket (every download, uploads above 500 MB),
# which the store's NetworkPolicy refuses and which would make the bucket a client dependency.
# Every MLflow client of the platform gets these so all artifact traffic goes through the server.
CLIENT_ENV: dict[str, str] = {
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
}
# Outside the cluster (RDS, AWS S3) the addresses are not known to the program: the egress rule
# opens the port to any address, still only that port.
ANYWHERE = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
HTTPS = 443


def tracking_uri(namespace: str) -> str:
    """The tracking server's in-cluster URI (the chart names the Service after the release)."""
    return f"http://{RELEASE}.{namespace}.svc:{PORT}"


@dataclass(frozen=True)
class Database:
    """Where the tracking and auth stores live: consumer Secrets (username, password, host, port, database)."""

    secret: str
    """The tracking (backend) store's Secret, ``postgres-mlflow``."""
    auth_secret: str
    """The basic-auth app's own database, ``postgres-mlflow-auth``, on the same server."""
    in_cluster: bool
    """True for charts/postgres in the stack's namespace; False for RDS (TLS required, address outside)."""


@dataclass(frozen=True)
class ArtifactStore:
    bucket: str
    endpoint_url: str
    """The S3 API endpoint; "" on AWS S3 (the SDK's default)."""
    credentials_secret: str
    """The server's own consumer key (access-key, secret-key); "" on AWS S3, where the IAM role signs."""
    region: str
    in_cluster: bool


def database_for(*, in_cluster_postgres: bool) -> Database:
    return Database(
        secret=postgres_names.consumer_secret_name("mlflow"),
        auth_secret=postgres_names.consumer_secret_name(AUTH_DB_CONSUMER),
        in_cluster=in_cluster_postgres,
    )


def artifact_store_for(*, kind: str, bucket: str, namespace: str, region: str) -> ArtifactStore:
    """MinIO: its Service and the ``mlflow`` consumer Secret; S3: the AWS endpoint and the IAM role."""
    if kind == "minio":
        return ArtifactStore(
            bucket=bucket,
            endpoint_url=minio.endpoint_url(namespace),
            credentials_secret=store_names.consumer_secret_name("mlflow"),
            region="us-east-1",
            in_cluster=True,
        )
    return ArtifactStore(bucket=bucket, endpoint_url="", credentials_secret="", region=region, in_cluster=False)


def _server_selector(release: str) -> dict[str, Any]:
    """The server pods of one of our charts' releases (charts/README.md: name, instance, component)."""
    labels = {
        "app.kubernetes.io/name": release,
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": "server",
    }
    return {"podSelector": {"matchLabels": labels}}


def egress_rules(database: Database, artifacts: ArtifactStore) -> list[dict[str, Any]]:
    """The server opens exactly its database and its object store."""
    return [
        {
            "to": [_server_selector(in_cluster.RELEASE)] if database.in_cluster else ANYWHERE,
            "ports": [postgres_names.PORT],
        },
        {
            "to": [_server_selector(minio.RELEASE)] if artifacts.in_cluster else ANYWHERE,
            "ports": [minio.PORT if artifacts.in_cluster else HTTPS],
        },
    ]


def build_values(
    *,
    scope: Scope,
    settings: MlflowSettings,
    image: ImageRef,
    database: Database,
    artifacts: ArtifactStore,
    auth_secret: str,
) -> dict[str, Any]:
    """Values for charts/mlflow: names of the Secrets holding credentials, never the credentials."""
    ingress = settings.ingress
    return {
        "commonLabels": scope.chart_labels(),
        "image": image.chart_values(),
        "replicas": settings.replicas,
        "server": {"workers": settings.workers},
        "backendStore": {"existingSecret": database.secret, "sslMode": "disable" if database.in_cluster else "require"},
        "auth": {
            "existingSecret": auth_secret,
            "adminUsername": settings.auth.admin_username,
            "defaultPermission": settings.auth.default_permission,
            "database": {"existingSecret": database.auth_secret},
        },
        "artifacts": {
            "destination": f"s3://{artifacts.bucket}",
            "s3": {
                "endpointUrl": artifacts.endpoint_url,
                "existingSecret": artifacts.credentials_secret,
                "region": artifacts.region,
            },
        },
        "metrics": {"enabled": settings.metrics},
        "ingress": {
            "enabled": ingress is not None,
            "host": ingress.host if ingress else "",
            "tlsSecret": (ingress.tls_secret or "") if ingress else "",
            "className": (ingress.class_name or "") if ingress else "",
        },
        # The stores' own policies admit pods by these labels (and grant them egress to the stores).
        "podLabels": {
            **(postgres_names.CLIENT_LABEL if database.in_cluster else {}),
            **(store_names.CLIENT_LABEL if artifacts.in_cluster else {}),
        },
        "resources": settings.resources.model_dump(),
        "networkPolicy": {
            "allowedClients": [{"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}],
            "egress": egress_rules(database, artifacts),
        },
    }


@dataclass
class MlflowArgs:
    namespace: pulumi.Input[str]
    """The Tenancy's namespace output: children wait for the namespace to exist."""
    scope: Scope
    settings: MlflowSettings
    image: ImageRef
    database: Database
    artifacts: ArtifactStore
    depends_on: list[pulumi.Resource]
    """The Postgres and object-store components: their Secrets must exist before the pod starts."""


class Mlflow(pulumi.ComponentResource):
    """The tracking server and model registry, with authentication on."""

    tracking_uri: pulumi.Output[str]
    auth_secret: pulumi.Output[str]

    def __init__(self, name: str, args: MlflowArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:research:Mlflow", name, None, opts)
        scope = args.scope
        namespace = pulumi.Output.from_input(args.namespace)
        # The admin password is only read when the user store is empty; churning it would lock
        # nobody out but would silently desynchronise the Secret from the real password.
        child = pulumi.ResourceOptions(parent=self, protect=scope.protect)
        admin_password = GeneratedPassword(f"{name}-admin-password", opts=child)
        flask_key = GeneratedPassword(f"{name}-flask-secret-key", length=48, opts=child)
        auth = credentials_secret(
            f"{name}-auth",
            name=AUTH_SECRET,
            namespace=namespace,
            labels=scope.object_labels("mlflow", component="credentials"),
            data=pulumi.Output.all(admin_password.value, flask_key.value).apply(
                lambda pair: {"admin-password": str(pair[0]), "flask-secret-key": str(pair[1])}
            ),
            opts=child,
        )
        release = local_chart_release(
            f"{name}-release",
            chart="mlflow",
            release=RELEASE,
            namespace=namespace,
            values=build_values(
                scope=scope,
                settings=args.settings,
                image=args.image,
                database=args.database,
                artifacts=args.artifacts,
                auth_secret=AUTH_SECRET,
            ),
            description="MLflow tracking server",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[auth, *args.depends_on]),
        )
        self.release_name = release.name
        self.tracking_uri = namespace.apply(tracking_uri)
        self.auth_secret = pulumi.Output.from_input(AUTH_SECRET)
        self.register_outputs(
            {"tracking_uri": self.tracking_uri, "auth_secret": self.auth_secret, "release_name": self.release_name}
        )
