"""JupyterHub: charts/jupyterhub with the hub database on Postgres and users wired to the platform.

The hub's own credentials (the proxy token, the cookie secret and, on the dev-only ``dummy`` auth
kind, the shared password) are generated here and reach the cluster only inside the Secret
``jupyterhub-hub``. The database URI is read by the hub from the ``postgres-jupyterhub`` Secret the
Postgres component creates; the OAuth client from the Secret the config names. Values name Secrets,
never carry a credential.

Each user's server gets the platform's endpoints as plain environment variables (the
``QFRAME_*`` names ``qframe.research.settings`` reads) and the object-store key pair of the
``notebooks`` consumer by Secret reference. Its pod carries the client labels of the services users
may reach (MLflow, the object store, Kafka) and none for Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.charts import local_chart_release
from infra.components.aws import NOTEBOOKS_SERVICE_ACCOUNT
from infra.components.credentials import credentials_secret
from infra.components.dask import CLIENT_LABEL as DASK_CLIENT_LABEL
from infra.components.dask import USERS_SERVICE_ACCOUNT as DASK_USERS_SERVICE_ACCOUNT
from infra.components.kafka import CLIENT_LABEL as KAFKA_CLIENT_LABEL
from infra.components.kafka import CLIENT_PORT as KAFKA_PORT
from infra.components.kafka import RELEASE_NAME as KAFKA_RELEASE
from infra.components.kafka import secret_name as kafka_secret_name
from infra.components.mlflow import AUTH_SECRET as MLFLOW_AUTH_SECRET
from infra.components.mlflow import CLIENT_ENV as MLFLOW_CLIENT_ENV
from infra.components.mlflow import CLIENT_LABEL as MLFLOW_CLIENT_LABEL
from infra.components.mlflow import tracking_uri as mlflow_tracking_uri
from infra.components.object_store import CLIENT_LABEL as OBJECT_STORE_CLIENT_LABEL
from infra.components.postgres import CLIENT_LABEL as POSTGRES_CLIENT_LABEL
from infra.components.postgres import consumer_secret_name as postgres_secret_name
from infra.components.ray import CLIENT_LABEL as RAY_CLIENT_LABEL
from infra.config import JupyterHubSettings, NotebookProfile
from infra.images import ImageRef
from infra.passwords import GeneratedPassword
from infra.quantities import parse_quantity
from infra.scope import Scope

RELEASE = "jupyterhub"
PUBLIC_PORT = 8000
HUB_SECRET = "jupyterhub-hub"  # noqa: S105 - a Secret's name, not a credential
POSTGRES_CONSUMER = "jupyterhub"
OBJECT_STORE_CONSUMER = "notebooks"
# Pods with this label may open the proxy's public port (charts/jupyterhub allowedClients).
CLIENT_LABEL = {"qframe.io/jupyterhub-client": "true"}
# The image's JupyterHub convention (images/notebook/README.md).
NOTEBOOK_UID = 1000
# Prefix of the per-user Secrets (MLflow login) the hub writes before each spawn.
MLFLOW_USER_SECRET_PREFIX = "mlflow-user-"  # noqa: S105 - a name prefix, not a credential


def public_url(namespace: str) -> str:
    """The proxy's public Service (the chart names it after the release)."""
    return f"http://{RELEASE}.{namespace}.svc:{PUBLIC_PORT}"


def kafka_bootstrap_servers(namespace: str) -> str:
    """The Kafka component's client Service (its chart names it after the release)."""
    return f"{KAFKA_RELEASE}.{namespace}.svc:{KAFKA_PORT}"


@dataclass(frozen=True)
class UserPlatform:
    """What a user's server connects to; ``None`` where the stack does not deploy it."""

    namespace: str
    lake_bucket: str
    object_store_endpoint: str | None
    """The in-cluster S3 endpoint; ``None`` on AWS S3 (the SDK's default endpoint)."""
    object_store_secret: str | None
    """The ``notebooks`` consumer's key-pair Secret; ``None`` where workloads use an IAM role."""
    mlflow: bool
    kafka_bootstrap: str | None
    compute: ComputeAddresses | None = None
    """The shared Dask and Ray clusters' addresses; ``None`` for a stack without either."""
    workload_identity: bool = False
    """S3 stack on EKS: users' servers reach the lake through the ``notebooks`` IRSA role."""


@dataclass(frozen=True)
class ComputeAddresses:
    """Stack outputs of the Dask and Ray components (infra/components/dask.py, ray.py); ``None`` where off."""

    dask_scheduler: str | None = None
    dask_dashboard: str | None = None
    ray_client: str | None = None
    ray_dashboard: str | None = None


def user_environment(platform: UserPlatform) -> tuple[dict[str, str], list[dict[str, str]]]:
    """``(plain variables, Secret-referenced variables)`` of every user's server.

    The catalog stays on the user's own volume: the platform's catalog database is Postgres, which
    user servers must not reach. Ray's dashboard address is also where jobs are submitted.
    """
    env = {
        "QFRAME_LAKE_URL": f"s3://{platform.lake_bucket}/",
        "QFRAME_CATALOG_URL": "sqlite:////home/jovyan/.qframe/catalog.db",
        "QFRAME_WORKDIR": "/home/jovyan/.qframe",
    }
    if platform.mlflow:
        env["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri(platform.namespace)
        # Artifact transfers through the server, never presigned URLs to the store (see CLIENT_ENV).
        env.update(MLFLOW_CLIENT_ENV)
    if platform.object_store_endpoint is not None:
        env["QFRAME_S3_ENDPOINT_URL"] = platform.object_store_endpoint
        env["AWS_ENDPOINT_URL_S3"] = platform.object_store_endpoint
    if platform.kafka_bootstrap is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = platform.kafka_bootstrap
        env["QFRAME_KAFKA_BOOTSTRAP_SERVERS"] = platform.kafka_bootstrap
    compute = platform.compute or ComputeAddresses()
    for name, value in (
        ("QFRAME_DASK_ADDRESS", compute.dask_scheduler),
        ("QFRAME_DASK_DASHBOARD_URL", compute.dask_dashboard),
        ("QFRAME_RAY_ADDRESS", compute.ray_client),
        ("QFRAME_RAY_DASHBOARD_URL", compute.ray_dashboard),
    ):
        if value is not None:
            env[name] = value
    secret_env = []
    if platform.object_store_secret is not None:
        secret_env = [
            {"name": "AWS_ACCESS_KEY_ID", "secretName": platform.object_store_secret, "key": "access-key"},
            {"name": "AWS_SECRET_ACCESS_KEY", "secretName": platform.object_store_secret, "key": "secret-key"},
        ]
    if platform.kafka_bootstrap is not None:
        # Researchers read the market data as Kafka's "research" user (its ACLs: read, never write).
        research = kafka_secret_name("research")
        secret_env += [
            {"name": "QFRAME_KAFKA_USERNAME", "secretName": research, "key": "username"},
            {"name": "QFRAME_KAFKA_PASSWORD", "secretName": research, "key": "password"},
        ]
    return env, secret_env


def user_server_account(*, dask: bool, workload_identity: bool) -> str:
    """The one ServiceAccount users' servers run as ("" for the namespace default, no identity).

    With Dask: its ``dask-users`` (KubeCluster's RBAC), which on S3 stacks on EKS also carries the
    ``notebooks`` IRSA role. Without Dask on those stacks: the IRSA account ``notebooks``.
    """
    if dask:
        return DASK_USERS_SERVICE_ACCOUNT
    return NOTEBOOKS_SERVICE_ACCOUNT if workload_identity else ""


def user_service_account(platform: UserPlatform) -> dict[str, str]:
    """The chart's singleuser account values; a purpose only where the Kubernetes API is needed.

    Without a purpose the chart mounts no API token and opens no API-server egress: the IRSA
    account's pods get their web-identity token from the EKS webhook's own projected volume.
    """
    dask = platform.compute is not None and platform.compute.dask_scheduler is not None
    account = user_server_account(dask=dask, workload_identity=platform.workload_identity)
    purpose = "creates the user's own Dask clusters (dask_kubernetes KubeCluster)" if dask else ""
    return {"serviceAccount": account, "serviceAccountPurpose": purpose}


def user_pod_labels(platform: UserPlatform) -> dict[str, str]:
    """Client labels of the services a user's server may reach (never Postgres)."""
    labels = dict(OBJECT_STORE_CLIENT_LABEL) if platform.object_store_endpoint is not None else {}
    if platform.mlflow:
        labels.update(MLFLOW_CLIENT_LABEL)
    if platform.kafka_bootstrap is not None:
        labels.update(KAFKA_CLIENT_LABEL)
    compute = platform.compute or ComputeAddresses()
    if compute.dask_scheduler is not None:
        labels.update(DASK_CLIENT_LABEL)
    if compute.ray_client is not None:
        labels.update(RAY_CLIENT_LABEL)
    return labels


def profile_values(profile: NotebookProfile) -> dict[str, Any]:
    """KubeSpawner takes cores as a number and memory as bytes."""
    values: dict[str, Any] = {
        "slug": profile.slug,
        "displayName": profile.display_name,
        "default": profile.default,
        "cpuGuarantee": float(parse_quantity(profile.cpu)),
        "cpuLimit": float(parse_quantity(profile.cpu_limit)),
        "memGuarantee": int(parse_quantity(profile.memory)),
        "memLimit": int(parse_quantity(profile.memory_limit)),
    }
    if profile.gpu is not None:
        values["gpu"] = {
            "count": profile.gpu.count,
            "nodeSelector": dict(profile.gpu.node_selector),
            "tolerationKey": profile.gpu.toleration_key,
        }
    return values


def mlflow_account_values(platform: UserPlatform, admin_username: str) -> dict[str, Any]:
    """The hub makes every user an MLflow account of their own before each spawn (where MLflow runs)."""
    return {
        "enabled": platform.mlflow,
        "url": mlflow_tracking_uri(platform.namespace) if platform.mlflow else "",
        "adminUsername": admin_username,
        "adminSecret": MLFLOW_AUTH_SECRET,
        "userSecretPrefix": MLFLOW_USER_SECRET_PREFIX,
    }


def _auth_values(settings: JupyterHubSettings) -> dict[str, Any]:
    auth = settings.auth
    values: dict[str, Any] = {
        "kind": auth.kind,
        "adminUsers": list(auth.admin_users),
        "allowedUsers": list(auth.allowed_users),
    }
    oauth = auth.oauth
    if oauth is not None:
        values["oauth"] = {
            "existingSecret": oauth.secret_name,
            "callbackUrl": oauth.callback_url,
            "allowedGroups": list(oauth.allowed_groups),
            "authorizeUrl": oauth.authorize_url or "",
            "tokenUrl": oauth.token_url or "",
            "userdataUrl": oauth.userdata_url or "",
            "usernameClaim": oauth.username_claim,
            "groupsClaim": oauth.groups_claim,
        }
    return values


def build_values(
    *,
    scope: Scope,
    settings: JupyterHubSettings,
    image: ImageRef,
    notebook_image: ImageRef,
    platform: UserPlatform,
    hub_secret: str,
    db_secret: str,
    mlflow_admin_username: str = "admin",
) -> dict[str, Any]:
    """Values for charts/jupyterhub: names of the Secrets holding credentials, never the credentials."""
    env, secret_env = user_environment(platform)
    ingress = settings.ingress
    return {
        "commonLabels": scope.chart_labels(),
        "image": image.chart_values(),
        "resources": settings.hub_resources.model_dump(),
        "hub": {
            "existingSecret": hub_secret,
            "db": {"existingSecret": db_secret, "uriKey": "uri"},
            # Postgres admits the hub for its database; MLflow for the users' accounts (its client label
            # also grants the hub egress to the tracking server through the mlflow chart's policy).
            "podLabels": {**POSTGRES_CLIENT_LABEL, **(MLFLOW_CLIENT_LABEL if platform.mlflow else {})},
        },
        "proxy": {"resources": settings.proxy_resources.model_dump()},
        "auth": _auth_values(settings),
        # Check a few times per timeout, at least every 5 minutes, so a server outlives its timeout briefly.
        "cull": {
            "enabled": True,
            "timeout": settings.idle_cull_seconds,
            "every": max(10, min(300, settings.idle_cull_seconds // 4)),
        },
        "singleuser": {
            "image": notebook_image.chart_values(),
            "uid": NOTEBOOK_UID,
            **user_service_account(platform),
            "podLabels": user_pod_labels(platform),
            "storage": {"size": settings.user_storage, "storageClassName": ""},
            "env": env,
            "secretEnv": secret_env,
            "profiles": [profile_values(profile) for profile in settings.profiles],
        },
        "mlflow": mlflow_account_values(platform, mlflow_admin_username),
        "ingress": {
            "enabled": ingress is not None,
            "host": ingress.host if ingress else "",
            "tlsSecret": (ingress.tls_secret or "") if ingress else "",
            "className": (ingress.class_name or "") if ingress else "",
        },
        "networkPolicy": {"allowedClients": [{"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}]},
    }


@dataclass
class JupyterHubArgs:
    namespace: pulumi.Input[str]
    """The Tenancy's namespace output: children wait for the namespace to exist."""
    scope: Scope
    settings: JupyterHubSettings
    image: ImageRef
    notebook_image: ImageRef
    platform: UserPlatform
    db_secret: str
    """The Postgres component's ``postgres-jupyterhub`` Secret (key ``uri``)."""
    mlflow_admin_username: str = "admin"
    """MLflow's admin (its config's auth.adminUsername): the hub creates the users' accounts as it."""


class JupyterHub(pulumi.ComponentResource):
    """The hub, its proxy and the users' servers' wiring (charts/jupyterhub)."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: JupyterHubArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:research:JupyterHub", name, None, opts)
        scope = args.scope
        namespace = pulumi.Output.from_input(args.namespace)
        child = pulumi.ResourceOptions(parent=self)

        proxy_token = GeneratedPassword(f"{name}-proxy-token", length=48, opts=child)
        cookie_secret = GeneratedPassword(f"{name}-cookie-secret", length=64, opts=child)
        passwords: dict[str, pulumi.Output[str]] = {
            "proxy-token": proxy_token.value,
            "cookie-secret": cookie_secret.value,
        }
        if args.settings.auth.kind == "dummy":
            # Dev only (the config refuses dummy elsewhere): one generated password for every listed user.
            passwords["dummy-password"] = GeneratedPassword(f"{name}-dummy-password", length=24, opts=child).value
        if args.platform.mlflow:
            # The key each user's MLflow password is derived from (charts/jupyterhub/files/mlflow_accounts.py).
            passwords["mlflow-user-key"] = GeneratedPassword(f"{name}-mlflow-user-key", length=48, opts=child).value
        hub_secret = credentials_secret(
            f"{name}-hub",
            name=HUB_SECRET,
            namespace=namespace,
            labels=scope.object_labels("jupyterhub", component="credentials"),
            data=pulumi.Output.all(**passwords).apply(lambda values: {k: str(v) for k, v in values.items()}),
            opts=child,
        )

        release = local_chart_release(
            f"{name}-release",
            chart="jupyterhub",
            release=RELEASE,
            namespace=namespace,
            values=build_values(
                scope=scope,
                settings=args.settings,
                image=args.image,
                notebook_image=args.notebook_image,
                platform=args.platform,
                hub_secret=HUB_SECRET,
                db_secret=args.db_secret,
                mlflow_admin_username=args.mlflow_admin_username,
            ),
            description="JupyterHub",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[hub_secret]),
        )

        self.release_name = release.name
        self.url = namespace.apply(public_url)
        self.register_outputs({"url": self.url, "release_name": self.release_name})


def db_secret_name() -> str:
    return postgres_secret_name(POSTGRES_CONSUMER)
