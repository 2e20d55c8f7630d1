# JupyterHub configuration of charts/jupyterhub. Static code: everything that varies per release is
# in hub.json (rendered from values, mounted next to this file) and every credential arrives as an
# environment variable from a Secret. `c` is the traitlets config object JupyterHub passes in.
# ruff: noqa: F821, S108
import hashlib
import json
import os
import sys
from pathlib import Path

settings_path = Path(os.environ.get("QFRAME_HUB_SETTINGS", Path(__file__).with_name("hub.json")))
settings = json.loads(settings_path.read_text())
auth = settings["auth"]
singleuser = settings["singleuser"]

# --- hub, proxy and database ---------------------------------------------------------------
c.JupyterHub.hub_bind_url = settings["hub"]["bindUrl"]
c.JupyterHub.hub_connect_url = settings["hub"]["connectUrl"]
c.JupyterHub.bind_url = settings["proxy"]["publicUrl"]
# The proxy runs in its own Deployment; the hub only talks to its API, so a hub restart keeps
# every user's route and running server.
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = settings["proxy"]["apiUrl"]
c.ConfigurableHTTPProxy.auth_token = os.environ["CONFIGPROXY_AUTH_TOKEN"]
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cleanup_proxy = False
# The Secret carries a URI for libpq (postgresql://); SQLAlchemy needs the psycopg 3 driver named.
db_url = os.environ["QFRAME_HUB_DB_URL"]
if db_url.startswith("postgresql://"):
    db_url = "postgresql+psycopg://" + db_url.removeprefix("postgresql://")
c.JupyterHub.db_url = db_url
# Any length of generated text becomes the 32 bytes JupyterHub signs cookies with.
c.JupyterHub.cookie_secret = hashlib.sha256(os.environ["QFRAME_HUB_COOKIE_SECRET"].encode()).digest()
c.JupyterHub.authenticate_prometheus = not settings["metrics"]["public"]
c.JupyterHub.last_activity_interval = 60

# --- authentication: nobody outside admins, allowed users (and allowed groups) gets in -------
c.Authenticator.admin_users = set(auth["adminUsers"])
c.Authenticator.allowed_users = set(auth["allowedUsers"]) | set(auth["adminUsers"])
c.Authenticator.allow_all = False
kind = auth["kind"]
if kind == "dummy":
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = os.environ["QFRAME_HUB_DUMMY_PASSWORD"]
elif kind == "native":
    c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
    # New sign-ups wait for an admin's approval; nobody is let in by signing up alone. Admins and
    # allowed users are approved when they sign up (claim those names first).
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.enable_signup = True
    # The approval is the list: NativeAuthenticator.authenticate returns only approved users with
    # the right password, so JupyterHub's own allowed_users check would refuse every user an admin
    # approved later. Signing up alone still lets nobody in.
    c.Authenticator.allow_all = True
elif kind in ("github", "generic-oauth"):
    oauth = auth["oauth"]
    c.JupyterHub.authenticator_class = (
        "oauthenticator.github.GitHubOAuthenticator"
        if kind == "github"
        else "oauthenticator.generic.GenericOAuthenticator"
    )
    section = c.GitHubOAuthenticator if kind == "github" else c.GenericOAuthenticator
    section.client_id = os.environ["OAUTH_CLIENT_ID"]
    section.client_secret = os.environ["OAUTH_CLIENT_SECRET"]
    section.oauth_callback_url = oauth["callbackUrl"]
    if kind == "github":
        section.allowed_organizations = set(oauth["allowedGroups"])
    else:
        section.authorize_url = oauth["authorizeUrl"]
        section.token_url = oauth["tokenUrl"]
        section.userdata_url = oauth["userdataUrl"]
        section.username_claim = oauth["usernameClaim"]
        # Groups are read from the provider's userinfo response (kept in auth_state as oauth_user);
        # OAuthenticator only reads them with group management on (set first: it is validated then).
        section.manage_groups = True
        section.auth_state_groups_key = f"oauth_user.{oauth['groupsClaim']}"
        section.allowed_groups = set(oauth["allowedGroups"])
else:
    raise ValueError(f"hub.json auth.kind {kind!r} is not one of dummy, native, github, generic-oauth")

# --- idle culler: a hub-managed service with exactly the scopes it needs --------------------
cull = settings["cull"]
if cull["enabled"]:
    c.JupyterHub.services = [
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={cull['timeout']}",
                f"--cull-every={cull['every']}",
                "--concurrency=5",
            ],
        }
    ]
    c.JupyterHub.load_roles = [
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    ]

# --- user servers (KubeSpawner) -------------------------------------------------------------
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = settings["namespace"]
c.KubeSpawner.image = singleuser["image"]
c.KubeSpawner.image_pull_policy = singleuser["pullPolicy"]
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.default_url = "/lab"
c.KubeSpawner.port = 8888
c.KubeSpawner.start_timeout = singleuser["startTimeout"]
c.KubeSpawner.http_timeout = 60
c.KubeSpawner.common_labels = singleuser["labels"]
c.KubeSpawner.extra_labels = singleuser["podLabels"]
# No Kubernetes API credentials in a user's pod, unless the release says why its servers need them
# (the platform's dask-users: exactly what creating one's own Dask clusters needs). An account
# without a purpose only names the pods' identity (IRSA on EKS: the webhook mounts the web-identity
# token in a volume of its own), so its API token stays unmounted.
c.KubeSpawner.service_account = singleuser["serviceAccount"] or None
if singleuser["serviceAccountPurpose"]:
    c.KubeSpawner.automount_service_account_token = True
    c.KubeSpawner.extra_annotations = {"qframe.io/needs-service-account-token": singleuser["serviceAccountPurpose"]}
else:
    c.KubeSpawner.automount_service_account_token = False
c.KubeSpawner.enable_user_namespaces = False
c.KubeSpawner.uid = singleuser["uid"]
c.KubeSpawner.gid = singleuser["uid"]
c.KubeSpawner.fs_gid = singleuser["uid"]
c.KubeSpawner.pod_security_context = {
    "runAsNonRoot": True,
    "runAsUser": singleuser["uid"],
    "runAsGroup": singleuser["uid"],
    "fsGroup": singleuser["uid"],
    "seccompProfile": {"type": "RuntimeDefault"},
}
c.KubeSpawner.container_security_context = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# One PVC per user, mounted as the home directory; /tmp is scratch.
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.pvc_name_template = "claim-{user_server}"
c.KubeSpawner.storage_capacity = singleuser["storage"]["size"]
c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
if singleuser["storage"]["storageClassName"]:
    c.KubeSpawner.storage_class = singleuser["storage"]["storageClassName"]
c.KubeSpawner.volumes = [
    {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
    {"name": "tmp", "emptyDir": {}},
]
c.KubeSpawner.volume_mounts = [
    {"name": "home", "mountPath": "/home/jovyan"},
    {"name": "tmp", "mountPath": "/tmp"},
]
# Plain values and Secret references (EnvVar specs with valueFrom) for the platform's endpoints.
c.KubeSpawner.environment = {
    **singleuser["env"],
    **{
        ref["name"]: {"valueFrom": {"secretKeyRef": {"name": ref["secretName"], "key": ref["key"]}}}
        for ref in singleuser["secretEnv"]
    },
}


def _profile(profile):
    overrides = {
        "cpu_guarantee": profile["cpuGuarantee"],
        "cpu_limit": profile["cpuLimit"],
        "mem_guarantee": profile["memGuarantee"],
        "mem_limit": profile["memLimit"],
    }
    gpu = profile.get("gpu")
    if gpu:
        overrides["extra_resource_limits"] = {"nvidia.com/gpu": str(gpu["count"])}
        overrides["node_selector"] = gpu["nodeSelector"]
        overrides["tolerations"] = [{"key": gpu["tolerationKey"], "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "slug": profile["slug"],
        "display_name": profile["displayName"],
        "default": profile["default"],
        "kubespawner_override": overrides,
    }


c.KubeSpawner.profile_list = [_profile(p) for p in singleuser["profiles"]]

# --- per-user MLflow accounts (mlflow_accounts.py, mounted next to this file) ---------------
mlflow = settings["mlflow"]
if mlflow["enabled"]:
    sys.path.insert(0, str(Path(__file__).parent))
    from mlflow_accounts import MlflowAccounts

    c.Spawner.pre_spawn_hook = MlflowAccounts(
        url=mlflow["url"],
        admin_username=mlflow["adminUsername"],
        admin_password=os.environ["QFRAME_MLFLOW_ADMIN_PASSWORD"],
        key=os.environ["QFRAME_MLFLOW_USER_KEY"],
        secret_prefix=mlflow["userSecretPrefix"],
        labels=mlflow["secretLabels"],
    ).pre_spawn_hook
