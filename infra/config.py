"""The stack config: one closed, typed model parsed once before any resource is registered.

Every section the platform needs lives here, so a typo or an out-of-range value in
``Pulumi.<stack>.yaml`` fails fast with the key path, the value and what is allowed, instead of
half-way through ``pulumi up``. Keys are camelCase in YAML (Pulumi's convention) and snake_case in
Python. Each top-level field is one Pulumi config key ``qframe-research:<field>``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra.image_tags import IMAGE_TAGS
from infra.quantities import parse_quantity

PROJECT = "qframe-research"

# --------------------------------------------------------------------------------------------
# Scalar types with their own rules
# --------------------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_REGISTRY = re.compile(r"^[a-z0-9]+([._:/-][a-z0-9]+)*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Every pattern here is applied with fullmatch: re.match with "$" also matches before a trailing
# "\n", so "qframe\n" would pass the check and fail only when Kubernetes sees it.
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
# A KMS key ARN, an alias ARN, or an alias name (alias/<name>); the program resolves aliases to
# their key's ARN (infra/components/aws/kms.py), which IAM policies need.
_KMS_REF = re.compile(
    r"^(arn:aws[a-z-]*:kms:([a-z0-9-]+):[0-9]{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)|alias/[A-Za-z0-9/_-]+)$"
)
_IAM_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$")
_CLAIM = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


# Namespaces the cluster itself owns: the stack labels its namespace for restricted Pod Security and
# default-deny networking, and `pulumi destroy` deletes it, neither of which may happen to these.
_SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _namespace(value: str) -> str:
    _dns_label(value)
    if value in _SYSTEM_NAMESPACES or value.startswith("kube-"):
        raise ValueError(
            f"{value!r} belongs to the cluster itself: the stack would put restricted Pod Security and "
            "default-deny policies on it and `pulumi destroy` would delete it; choose a namespace of "
            "the platform's own, such as qframe"
        )
    return value


def _label_key(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if prefix and (len(prefix) > 253 or not all(_dns_label_ok(part) for part in prefix.split("."))):
        raise ValueError(f"label key {value!r} has an invalid prefix; use a DNS subdomain such as example.com/")
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        raise ValueError(
            f"label key {value!r} is invalid: the name part takes at most 63 letters, digits, '-', '_', '.'"
        )
    return value


def _dns_label_ok(part: str) -> bool:
    return len(part) <= 63 and bool(_DNS_LABEL.fullmatch(part))


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"label value {value!r} is invalid: at most 63 letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _image_tag(value: str) -> str:
    if value == "latest":
        raise ValueError("'latest' is not a pinned tag; name an exact version such as 0.1.0 or a sha256 digest")
    if not (_IMAGE_TAG.fullmatch(value) or _DIGEST.fullmatch(value)):
        raise ValueError(f"{value!r} is not an image tag; use letters, digits, '.', '_', '-' or sha256:<64 hex>")
    return value


def _registry(value: str) -> str:
    if not _REGISTRY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an image registry prefix; use lowercase path segments such as 'qframe' "
            "or '<registry-host>/qframe', without a trailing '/'"
        )
    return value


def _bucket(value: str) -> str:
    ip_like = True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        ip_like = False
    if not _BUCKET.fullmatch(value) or ".." in value or ip_like or value.startswith("xn--"):
        raise ValueError(
            f"{value!r} is not a valid S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit, not an IP address"
        )
    return value


def _cpu(value: str) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"cpu {value!r} must be greater than zero")
    return value


def _memory(value: str) -> str:
    if parse_quantity(value) < 2**20:
        raise ValueError(f"memory {value!r} is below 1Mi; write e.g. 512Mi or 2Gi (a bare number means bytes)")
    return value


def _storage(value: str) -> str:
    if parse_quantity(value) < 2**30:
        raise ValueError(f"storage size {value!r} is below 1Gi; write e.g. 10Gi")
    return value


def _matches(pattern: re.Pattern[str], what: str, example: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}; expected something like {example}")
        return value

    return AfterValidator(check)


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
NamespaceName = Annotated[str, AfterValidator(_namespace)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
ImageTag = Annotated[str, AfterValidator(_image_tag)]
Registry = Annotated[str, AfterValidator(_registry)]
BucketName = Annotated[str, AfterValidator(_bucket)]
Cpu = Annotated[str, AfterValidator(_cpu)]
Memory = Annotated[str, AfterValidator(_memory)]
Storage = Annotated[str, AfterValidator(_storage)]


def _topic(value: str) -> str:
    if not _TOPIC.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Kafka topic name: 1-249 letters, digits, '.', '_' or '-', e.g. market-data.1m"
        )
    if value in (".", ".."):
        raise ValueError(f"{value!r} is refused by Kafka as a topic name (it is a path on the broker's disk)")
    return value


TopicName = Annotated[str, AfterValidator(_topic)]
AwsRegion = Annotated[str, _matches(_AWS_REGION, "an AWS region", "eu-west-1")]
SubnetId = Annotated[str, _matches(_SUBNET, "a subnet id", "subnet-0a1b2c3d4e5f60718")]
SecurityGroupId = Annotated[str, _matches(_SECURITY_GROUP, "a security group id", "sg-0a1b2c3d4e5f60718")]
KmsKeyArn = Annotated[
    str,
    _matches(
        _KMS_REF,
        "a KMS key ARN, alias ARN or alias name",
        "arn:aws:kms:eu-west-1:123456789012:key/<key-id>, "
        "arn:aws:kms:eu-west-1:123456789012:alias/<name> or alias/<name>",
    ),
]
IamName = Annotated[str, _matches(_IAM_NAME, "an IAM role or user name", "qframe-research")]
Username = Annotated[str, _matches(_USERNAME, "a user name", "alice")]
HttpsUrl = Annotated[str, _matches(_HTTPS_URL, "an https URL", "https://sso.example.com/oauth2/token")]
ClaimName = Annotated[str, _matches(_CLAIM, "a claim name", "preferred_username")]


class RuleError(ValueError):
    """A cross-field rule broken at ``at`` (a camelCase path relative to the model that raised it).

    pydantic reports model-level errors at the model's own location; carrying the exact key lets
    the error message point at ``dask.minWorkers`` instead of the whole ``dask`` section.
    """

    def __init__(self, at: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.at = at
        self.value = value


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


class Closed(BaseModel):
    """Base for every section: unknown keys are errors, YAML keys are camelCase, models are frozen.

    Strict: ``replicas: true`` is not 1, ``partitions: "3"`` or ``3.0`` is not 3, ``enabled: 1`` is
    not true; a value of the wrong type is refused instead of guessed at.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        validate_default=True,
    )


class ResourceAmounts(Closed):
    cpu: Cpu
    memory: Memory


class Resources(Closed):
    """Container requests and limits; every workload gets both (a security rule of the platform)."""

    requests: ResourceAmounts
    limits: ResourceAmounts

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Self:
        for field in ("cpu", "memory"):
            request, limit = getattr(self.requests, field), getattr(self.limits, field)
            if parse_quantity(request) > parse_quantity(limit):
                raise RuleError(f"requests.{field}", request, f"must not exceed limits.{field} ({limit})")
        return self


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Any:
    return Field(
        default_factory=lambda: Resources(
            requests=ResourceAmounts(cpu=cpu, memory=memory),
            limits=ResourceAmounts(cpu=cpu_limit, memory=memory_limit),
        )
    )


class ImageTags(Closed):
    """One pinned tag per image a deployed component runs; the registry prefix is shared.

    An image joins this list with the component that runs it (see ``NOT_DEPLOYED_YET``). The
    defaults are the content tags `make images` builds (infra/image_tags.py, generated).
    """

    minio: ImageTag = IMAGE_TAGS["minio"]
    postgres: ImageTag = IMAGE_TAGS["postgres"]
    kafka: ImageTag = IMAGE_TAGS["kafka"]
    tools: ImageTag = IMAGE_TAGS["tools"]
    mlflow: ImageTag = IMAGE_TAGS["mlflow"]
    hub: ImageTag = IMAGE_TAGS["hub"]
    notebook: ImageTag = IMAGE_TAGS["notebook"]
    # Dask scheduler/workers and Ray head/workers share one image; each operator has its own.
    worker: ImageTag = IMAGE_TAGS["worker"]
    dask_operator: ImageTag = IMAGE_TAGS["dask-operator"]
    kuberay_operator: ImageTag = IMAGE_TAGS["kuberay-operator"]


class Images(Closed):
    registry: Registry = "qframe"
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    tags: ImageTags = Field(default_factory=ImageTags)


class Buckets(Closed):
    data_lake: BucketName = "qframe-data-lake"
    mlflow_artifacts: BucketName = "qframe-mlflow-artifacts"
    scratch_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9!_.*'()-]+/$")] = "scratch/"

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.data_lake == self.mlflow_artifacts:
            raise RuleError("mlflowArtifacts", self.mlflow_artifacts, "must be a different bucket than dataLake")
        return self


class MinioSettings(Closed):
    storage: Storage = "10Gi"
    resources: Resources = _resources("100m", "256Mi", "1", "1Gi")


class IamPrincipal(Closed):
    kind: Literal["role", "user"] = "role"
    name: IamName


class S3Settings(Closed):
    kms_key_arn: KmsKeyArn | None = None
    scratch_expiration_days: Annotated[int, Field(ge=1, le=3650)] = 7
    force_destroy: bool = False
    principal: IamPrincipal | None = None


class ObjectStoreSettings(Closed):
    kind: Literal["minio", "s3"] = "minio"
    buckets: Buckets = Field(default_factory=Buckets)
    minio: MinioSettings = Field(default_factory=MinioSettings)
    s3: S3Settings = Field(default_factory=S3Settings)


def _pod_network(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR form such as 10.244.0.0/16 ({exc})") from None
    if network.prefixlen == 0:
        raise ValueError(f"{value!r} admits every address; name the cluster's pod network, e.g. 10.244.0.0/16")
    return value


class InClusterPostgresSettings(Closed):
    storage: Storage = "5Gi"
    resources: Resources = _resources("100m", "256Mi", "1", "1Gi")
    # pg_hba.conf lets logins come only from these networks (scram-sha-256): the cluster's pod
    # network (10.244.0.0/16 on the dev node and most kubeadm clusters).
    pod_networks: Annotated[list[Annotated[str, AfterValidator(_pod_network)]], Field(min_length=1)] = Field(
        default_factory=lambda: ["10.244.0.0/16"]
    )


def _pem_bundle(value: str) -> str:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----", value)
    rest = re.sub(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----", "", value)
    if not blocks or rest.strip():
        raise ValueError(
            "is not a PEM certificate bundle (only -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- "
            "blocks); give the RDS CA bundle of the stack's region"
        )
    return value


PemBundle = Annotated[str, AfterValidator(_pem_bundle)]


class RdsSettings(Closed):
    instance_class: Annotated[str, Field(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")] = "db.t4g.micro"
    engine_version: Annotated[str, Field(pattern=r"^[0-9]{2}(\.[0-9]+)?$")] = "16.4"
    allocated_storage_gb: Annotated[int, Field(ge=20, le=65536)] = 20
    backup_retention_days: Annotated[int, Field(ge=0, le=35)] = 7
    multi_az: bool = False
    subnet_ids: list[SubnetId] = Field(default_factory=list)
    security_group_ids: list[SecurityGroupId] = Field(default_factory=list)
    # The RDS certificate authorities (PEM) the init Job verifies the server with (sslmode
    # verify-full); without it the Job still requires TLS but cannot tell RDS from an impostor.
    ca_bundle: PemBundle | None = None


class PostgresSettings(Closed):
    kind: Literal["in-cluster", "rds"] = "in-cluster"
    in_cluster: InClusterPostgresSettings = Field(default_factory=InClusterPostgresSettings)
    rds: RdsSettings = Field(default_factory=RdsSettings)


class KafkaTopic(Closed):
    name: TopicName
    partitions: Annotated[int, Field(ge=1, le=1000)] = 3
    retention_hours: Annotated[int, Field(ge=-1, le=24 * 365 * 10)] = 168
    replication_factor: Annotated[int, Field(ge=1, le=9)] | None = None

    @model_validator(mode="after")
    def _retention_not_zero(self) -> Self:
        if self.retention_hours == 0:
            raise RuleError("retentionHours", 0, "would delete every message at once; use -1 (unlimited) or >= 1")
        return self


def _default_topics() -> list[KafkaTopic]:
    return [
        KafkaTopic(name=f"market-data.{timeframe}", partitions=3, retention_hours=hours)
        for timeframe, hours in (("1m", 72), ("1h", 720), ("1d", -1))
    ]


# The smallest JVM heap a broker gets (infra/components/kafka.py gives it half the memory limit).
KAFKA_MIN_HEAP_MIB = 256


class KafkaSettings(Closed):
    replicas: Annotated[int, Field(ge=1, le=9)] = 1
    storage: Storage = "5Gi"
    resources: Resources = _resources("200m", "768Mi", "1", "1536Mi")
    topics: list[KafkaTopic] = Field(default_factory=_default_topics)
    # How hard the brokers (every one a KRaft voter) are kept off each other's node: "required"
    # leaves a broker Pending rather than put two voters on one node.
    pod_anti_affinity: Literal["preferred", "required"] = "preferred"
    # An existing Secret (tls.crt, tls.key, ca.crt: cert-manager's shape) for TLS on the client and
    # inter-broker listener (SASL_SSL); none keeps SASL_PLAINTEXT inside the cluster network.
    tls_secret: DnsLabel | None = None

    @model_validator(mode="after")
    def _quorum_and_topics(self) -> Self:
        # Every replica also votes in the KRaft controller quorum; an even count adds a node
        # without adding fault tolerance, which is never what the operator wanted.
        if self.replicas > 1 and self.replicas % 2 == 0:
            raise RuleError(
                "replicas",
                self.replicas,
                f"every replica votes in the KRaft quorum and an even size tolerates no more failures "
                f"than {self.replicas - 1}; use an odd count (1, 3, 5)",
            )
        seen: set[str] = set()
        metric_names: dict[str, str] = {}
        for index, topic in enumerate(self.topics):
            if topic.name in seen:
                raise RuleError(f"topics[{index}].name", topic.name, "is listed twice; topic names must be unique")
            seen.add(topic.name)
            # Kafka refuses to create a topic that differs from another only by '.' versus '_'
            # (their metric names collide), so the bootstrap Job would fail half-way.
            other = metric_names.setdefault(topic.name.replace(".", "_"), topic.name)
            if other != topic.name:
                raise RuleError(
                    f"topics[{index}].name",
                    topic.name,
                    f"collides with topic {other!r}: Kafka treats '.' and '_' alike in topic names; rename one",
                )
            if topic.replication_factor is not None and topic.replication_factor > self.replicas:
                raise RuleError(
                    f"topics[{index}].replicationFactor",
                    topic.replication_factor,
                    f"exceeds kafka.replicas ({self.replicas}); a topic cannot have more replicas than brokers",
                )
        # The broker's JVM heap is half the memory limit but never below KAFKA_MIN_HEAP_MIB; under
        # twice that floor the heap alone would not fit in the container and the broker is
        # OOM-killed at start.
        floor = 2 * KAFKA_MIN_HEAP_MIB * 2**20
        if parse_quantity(self.resources.limits.memory) < floor:
            raise RuleError(
                "resources.limits.memory",
                self.resources.limits.memory,
                f"is below {2 * KAFKA_MIN_HEAP_MIB}Mi: the broker's JVM heap is half the limit and at least "
                f"{KAFKA_MIN_HEAP_MIB} MiB, so it would not fit in the container; use at least "
                f"{2 * KAFKA_MIN_HEAP_MIB}Mi (1536Mi is the default)",
            )
        return self


def _require_unique(section: str, field: str, values: list[str]) -> None:
    for index, value in enumerate(values):
        if value in values[:index]:
            raise RuleError(
                f"{section}[{index}].{field}", value, f"repeats an earlier {field}; {field}s must be unique"
            )


class IngressSettings(Closed):
    """An Ingress in front of a web UI; TLS terminates at the Ingress controller with this Secret."""

    host: Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$", max_length=253)]
    tls_secret: DnsLabel | None = None
    class_name: DnsLabel | None = None


class NotebookGpu(Closed):
    """GPU profiles land on GPU nodes only: a node selector, and a toleration of their taint."""

    count: Annotated[int, Field(ge=1, le=8)] = 1
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=lambda: {"qframe.io/gpu": "true"})
    toleration_key: LabelKey = "nvidia.com/gpu"


class NotebookProfile(Closed):
    slug: DnsLabel
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    cpu: Cpu = "1"
    memory: Memory = "2Gi"
    cpu_limit: Cpu = "2"
    memory_limit: Memory = "4Gi"
    default: bool = False
    gpu: NotebookGpu | None = None

    @model_validator(mode="after")
    def _guarantee_within_limit(self) -> Self:
        for field, limit_field in (("cpu", "cpu_limit"), ("memory", "memory_limit")):
            guarantee, limit = getattr(self, field), getattr(self, limit_field)
            if parse_quantity(guarantee) > parse_quantity(limit):
                camel = to_camel(limit_field)
                raise RuleError(field, guarantee, f"the guarantee must not exceed {camel} ({limit})")
        return self


def _default_profiles() -> list[NotebookProfile]:
    return [
        NotebookProfile(slug="small", display_name="Small (1 CPU, 2 GiB)", cpu="1", memory="2Gi", default=True),
        NotebookProfile(
            slug="medium",
            display_name="Medium (2 CPU, 8 GiB)",
            cpu="2",
            memory="8Gi",
            cpu_limit="4",
            memory_limit="8Gi",
        ),
    ]


class JupyterHubOAuth(Closed):
    """OAuthenticator settings (auth kinds github and generic-oauth); the client id and secret are
    read from the keys ``client-id`` and ``client-secret`` of the Secret named here, never from config."""

    secret_name: DnsLabel = "jupyterhub-oauth"  # noqa: S105 - a Secret's name, not a credential
    callback_url: HttpsUrl
    allowed_groups: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)
    # generic-oauth only (GitHub's endpoints are built in)
    authorize_url: HttpsUrl | None = None
    token_url: HttpsUrl | None = None
    userdata_url: HttpsUrl | None = None
    username_claim: ClaimName = "preferred_username"
    groups_claim: ClaimName = "groups"


_GENERIC_ONLY = ("authorize_url", "token_url", "userdata_url", "username_claim", "groups_claim")


class JupyterHubAuth(Closed):
    """Who may log in. Only admins and listed users (or, with OAuth, members of listed groups) get in."""

    kind: Literal["dummy", "native", "github", "generic-oauth"] = "native"
    admin_users: list[Username] = Field(default_factory=lambda: ["admin"])
    allowed_users: list[Username] = Field(default_factory=list)
    oauth: JupyterHubOAuth | None = None

    @model_validator(mode="after")
    def _kind_settings(self) -> Self:
        if not self.admin_users:
            raise RuleError("adminUsers", [], f"is empty; auth kind {self.kind!r} needs at least one admin")
        _require_unique("adminUsers", "name", list(self.admin_users))
        oauth_kind = self.kind in ("github", "generic-oauth")
        if oauth_kind and self.oauth is None:
            raise RuleError(
                "oauth",
                None,
                f"is missing; auth kind {self.kind!r} needs at least oauth.callbackUrl (the client id and "
                "secret are read from the Secret oauth.secretName, keys client-id and client-secret)",
            )
        if not oauth_kind and self.oauth is not None:
            raise RuleError(
                "oauth",
                self.oauth.model_dump(mode="json", by_alias=True, exclude_unset=True),
                f"is read only by auth kinds github and generic-oauth, and this stack uses {self.kind!r}; "
                "remove auth.oauth or change auth.kind",
            )
        if self.oauth is not None and self.kind == "generic-oauth":
            for field in ("authorize_url", "token_url", "userdata_url"):
                if getattr(self.oauth, field) is None:
                    raise RuleError(f"oauth.{to_camel(field)}", None, "is required with auth kind 'generic-oauth'")
        if self.oauth is not None and self.kind == "github":
            for field in _GENERIC_ONLY:
                if field in self.oauth.model_fields_set:
                    raise RuleError(
                        f"oauth.{to_camel(field)}",
                        getattr(self.oauth, field),
                        "is read only by auth kind 'generic-oauth' (GitHub's endpoints and claims are built in); "
                        "remove it",
                    )
        return self


class JupyterHubSettings(Closed):
    enabled: bool = True
    auth: JupyterHubAuth = Field(default_factory=JupyterHubAuth)
    profiles: list[NotebookProfile] = Field(default_factory=_default_profiles)
    idle_cull_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 3600
    user_storage: Storage = "10Gi"
    hub_resources: Resources = _resources("100m", "256Mi", "1", "1Gi")
    proxy_resources: Resources = _resources("50m", "64Mi", "500m", "256Mi")
    ingress: IngressSettings | None = None

    @model_validator(mode="after")
    def _profiles_consistent(self) -> Self:
        if not self.profiles:
            raise RuleError("profiles", [], "is empty; list at least one notebook profile")
        _require_unique("profiles", "slug", [p.slug for p in self.profiles])
        defaults = [index for index, profile in enumerate(self.profiles) if profile.default]
        if len(defaults) > 1:
            raise RuleError(
                f"profiles[{defaults[1]}].default",
                True,
                f"profiles[{defaults[0]}] is already the default; mark exactly one profile (or none)",
            )
        return self


class MlflowAuth(Closed):
    """MLflow's basic-auth app: always on; the admin password is generated into the Secret mlflow-auth."""

    admin_username: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = "admin"
    default_permission: Literal["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"] = "READ"


class MlflowSettings(Closed):
    enabled: bool = True
    replicas: Annotated[int, Field(ge=1, le=10)] = 1
    workers: Annotated[int, Field(ge=1, le=16)] = 2
    resources: Resources = _resources("100m", "512Mi", "1", "1Gi")
    auth: MlflowAuth = Field(default_factory=MlflowAuth)
    metrics: bool = True
    ingress: IngressSettings | None = None


def _memory_at_least(resources: Resources, floor: str, at: str, why: str) -> None:
    if parse_quantity(resources.limits.memory) < parse_quantity(floor):
        raise RuleError(f"{at}.limits.memory", resources.limits.memory, f"is below {floor}; {why}")


class DaskSettings(Closed):
    """The shared Dask cluster (DaskCluster + DaskAutoscaler) and the dask-kubernetes operator."""

    enabled: bool = True
    install_operator: bool = True
    """False when the cluster already runs the operator (and its CRDs) at a compatible version."""
    min_workers: Annotated[int, Field(ge=0, le=200)] = 1
    max_workers: Annotated[int, Field(ge=1, le=200)] = 4
    worker_threads: Annotated[int, Field(ge=1, le=64)] = 1
    scheduler_resources: Resources = _resources("100m", "384Mi", "1", "1Gi")
    worker_resources: Resources = _resources("250m", "768Mi", "1", "1536Mi")

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_workers > self.max_workers:
            raise RuleError("minWorkers", self.min_workers, f"must not exceed maxWorkers ({self.max_workers})")
        _memory_at_least(
            self.worker_resources, "512Mi", "workerResources", "a Dask worker pauses at 80% of its memory limit"
        )
        _memory_at_least(self.scheduler_resources, "256Mi", "schedulerResources", "the scheduler would be OOM-killed")
        return self


class RayGpu(Closed):
    """GPU workers land on GPU nodes only: a node selector, and a toleration of their taint."""

    count: Annotated[int, Field(ge=1, le=8)] = 1
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=lambda: {"qframe.io/gpu": "true"})
    toleration_key: LabelKey = "nvidia.com/gpu"


class RayWorkerGroup(Closed):
    # KubeRay names pods <cluster>-<group>-worker-<5 chars>; 30 keeps that within 63.
    name: Annotated[DnsLabel, Field(max_length=30)]
    min_replicas: Annotated[int, Field(ge=0, le=200)] = 0
    max_replicas: Annotated[int, Field(ge=1, le=200)] = 4
    resources: Resources = _resources("250m", "1Gi", "1", "2Gi")
    gpu: RayGpu | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise RuleError("minReplicas", self.min_replicas, f"must not exceed maxReplicas ({self.max_replicas})")
        _memory_at_least(self.resources, "1Gi", "resources", "a Ray node needs room for its raylet and object store")
        return self


def _default_ray_groups() -> list[RayWorkerGroup]:
    return [RayWorkerGroup(name="cpu", min_replicas=1, max_replicas=4)]


class RaySettings(Closed):
    """The shared RayCluster (in-tree autoscaler on) and the KubeRay operator."""

    enabled: bool = True
    install_operator: bool = True
    """False when the cluster already runs KubeRay (and its CRDs) at a compatible version."""
    upscaling_mode: Literal["Default", "Conservative", "Aggressive"] = "Default"
    idle_timeout_seconds: Annotated[int, Field(ge=10, le=24 * 3600)] = 60
    head_resources: Resources = _resources("250m", "1536Mi", "1", "2Gi")
    autoscaler_resources: Resources = _resources("100m", "256Mi", "500m", "512Mi")
    worker_groups: list[RayWorkerGroup] = Field(default_factory=_default_ray_groups)

    @model_validator(mode="after")
    def _groups(self) -> Self:
        if not self.worker_groups:
            raise RuleError("workerGroups", [], "is empty; list at least one worker group")
        _require_unique("workerGroups", "name", [g.name for g in self.worker_groups])
        _memory_at_least(
            self.head_resources, "1Gi", "headResources", "the head runs the GCS, dashboard and object store"
        )
        return self


# EKS versions the platform is tested against; newer ones join when AWS releases them and the
# components are checked against them, older ones leave when AWS ends their standard support.
EKS_VERSIONS: tuple[str, ...] = ("1.30", "1.31", "1.32", "1.33", "1.34")
EKS_LOG_TYPES = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
# The only address ranges a VPC of the platform may use: RFC 1918 private networks.
_PRIVATE_RANGES = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_EKS_VERSION = re.compile(r"^1\.[0-9]{2}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# NVIDIA instance families (g4dn, g5, g6e, p4d, p5, ...); the GPU AMI and device plugin need them.
# g4ad carries AMD GPUs, which the NVIDIA AMI cannot drive.
_GPU_INSTANCE = re.compile(r"^(?!g4ad\.)(g[0-9]+|p[0-9]+)[a-z]*\.[a-z0-9]+$")
# The cluster-autoscaler release per EKS minor: its minor must equal the cluster's (it vendors that
# Kubernetes' scheduler). Each is the newest patch SIG Autoscaling released for that minor when
# pinned; 1.30 has none pinned, so a 1.30 cluster names its own tag.
CLUSTER_AUTOSCALER_RELEASES: dict[str, str] = {
    "1.31": "v1.31.5",
    "1.32": "v1.32.4",
    "1.33": "v1.33.2",
    "1.34": "v1.34.1",
}
_CLUSTER_AUTOSCALER_TAG = re.compile(r"^v(1\.[0-9]{2})\.[0-9]+$")


def _vpc_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 network in CIDR form such as 10.0.0.0/16 ({exc})") from None
    if not any(network.subnet_of(private) for private in _PRIVATE_RANGES):
        raise ValueError(
            f"{value!r} is not a private network; use a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
        )
    if not 16 <= network.prefixlen <= 20:
        raise ValueError(
            f"{value!r} is a /{network.prefixlen}; the VPC must be a /16 to /20 so every zone gets room for "
            "pods (the VPC CNI gives each pod a VPC address), e.g. 10.0.0.0/16"
        )
    return value


def _public_access_cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR form such as 203.0.113.0/24 ({exc})") from None
    if network.prefixlen == 0:
        raise ValueError(
            f"{value!r} would open the cluster's API endpoint to the whole internet; list the networks "
            "that run `pulumi up` and kubectl (e.g. 203.0.113.0/24), or none for a private-only endpoint"
        )
    return value


def _eks_version(value: str) -> str:
    if not _EKS_VERSION.fullmatch(value):
        raise ValueError(f"{value!r} is not an EKS version; write major.minor such as {EKS_VERSIONS[-1]}")
    if value not in EKS_VERSIONS:
        raise ValueError(f"EKS version {value} is not supported by the platform; use one of {', '.join(EKS_VERSIONS)}")
    return value


def instance_architecture(instance_type: str) -> Literal["arm64", "x86_64"]:
    """Graviton types carry a ``g`` after the generation (m6g, c7gn, r8gd, g5g) or are the a1 family."""
    match = re.fullmatch(r"([a-z]+)([0-9]+)([a-z-]*)\.[a-z0-9]+", instance_type)
    if match is not None and (match.group(1) == "a" or "g" in match.group(3)):
        return "arm64"
    return "x86_64"


VpcCidr = Annotated[str, AfterValidator(_vpc_cidr)]
PublicAccessCidr = Annotated[str, AfterValidator(_public_access_cidr)]
EksVersion = Annotated[str, AfterValidator(_eks_version)]
InstanceType = Annotated[str, _matches(_INSTANCE_TYPE, "an EC2 instance type", "m6i.large")]


class NetworkSettings(Closed):
    """The VPC the EKS cluster lives in; subnets are carved from ``cidr`` (infra/components/aws/network.py)."""

    cidr: VpcCidr = "10.0.0.0/16"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    # perAz keeps each zone's egress up when another zone fails; one NAT is cheaper and fine for dev.
    nat_gateways: Literal["one", "perAz"] = "perAz"


class NodeGroupSettings(Closed):
    instance_types: Annotated[list[InstanceType], Field(min_length=1, max_length=20)]
    min_size: Annotated[int, Field(ge=0, le=1000)]
    desired_size: Annotated[int, Field(ge=0, le=1000)]
    max_size: Annotated[int, Field(ge=1, le=1000)]
    disk_size_gb: Annotated[int, Field(ge=20, le=16384)] = 50
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sizes_and_labels(self) -> Self:
        if self.min_size > self.desired_size:
            raise RuleError("minSize", self.min_size, f"must not exceed desiredSize ({self.desired_size})")
        if self.desired_size > self.max_size:
            raise RuleError("desiredSize", self.desired_size, f"must not exceed maxSize ({self.max_size})")
        _require_unique("instanceTypes", "type", list(self.instance_types))
        # A node group runs one AMI, which is built for one CPU architecture.
        first = instance_architecture(self.instance_types[0])
        for index, instance_type in enumerate(self.instance_types):
            if instance_architecture(instance_type) != first:
                raise RuleError(
                    f"instanceTypes[{index}]",
                    instance_type,
                    f"is {instance_architecture(instance_type)}, but instanceTypes[0] ({self.instance_types[0]}) is "
                    f"{first}; a node group runs one AMI, so list types of one architecture",
                )
        for key, value in self.labels.items():
            reserved = _reserved_label_prefix(key)
            if reserved is not None:
                raise RuleError(
                    f"labels.{key}",
                    value,
                    f"{reserved}* node labels are set by the platform (qframe.io/node-pool, qframe.io/gpu) or "
                    "by Kubernetes; choose another key such as team",
                )
        return self


class SystemNodeGroup(NodeGroupSettings):
    """On-demand nodes for the platform's services and the cluster's own add-ons (CoreDNS)."""

    instance_types: Annotated[list[InstanceType], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: ["m6i.large"]
    )
    min_size: Annotated[int, Field(ge=0, le=1000)] = 2
    desired_size: Annotated[int, Field(ge=0, le=1000)] = 2
    max_size: Annotated[int, Field(ge=1, le=1000)] = 4

    @model_validator(mode="after")
    def _never_empty(self) -> Self:
        if self.min_size < 1:
            raise RuleError(
                "minSize", self.min_size, "must be at least 1: CoreDNS and the platform's services run only here"
            )
        return self


class ComputeNodeGroup(NodeGroupSettings):
    """Nodes for Dask/Ray workers and users' servers only (tainted); may be spot and scale to zero."""

    instance_types: Annotated[list[InstanceType], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: ["m6i.2xlarge", "m5.2xlarge"]
    )
    min_size: Annotated[int, Field(ge=0, le=1000)] = 0
    desired_size: Annotated[int, Field(ge=0, le=1000)] = 0
    max_size: Annotated[int, Field(ge=1, le=1000)] = 10
    capacity_type: Literal["spot", "on-demand"] = "spot"


class GpuNodeGroup(NodeGroupSettings):
    """NVIDIA GPU nodes (GPU AMI, tainted) for GPU notebook profiles and Ray GPU worker groups."""

    instance_types: Annotated[list[InstanceType], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: ["g5.xlarge"]
    )
    min_size: Annotated[int, Field(ge=0, le=1000)] = 0
    desired_size: Annotated[int, Field(ge=0, le=1000)] = 0
    max_size: Annotated[int, Field(ge=1, le=1000)] = 2
    capacity_type: Literal["spot", "on-demand"] = "on-demand"

    @model_validator(mode="after")
    def _gpu_types(self) -> Self:
        for index, instance_type in enumerate(self.instance_types):
            if not _GPU_INSTANCE.fullmatch(instance_type):
                raise RuleError(
                    f"instanceTypes[{index}]",
                    instance_type,
                    "is not an NVIDIA GPU instance type; the gpu group runs the GPU AMI and needs a g* or p* "
                    "type such as g5.xlarge",
                )
        return self


class NodeGroups(Closed):
    system: SystemNodeGroup = Field(default_factory=SystemNodeGroup)
    compute: ComputeNodeGroup = Field(default_factory=ComputeNodeGroup)
    gpu: GpuNodeGroup | None = None


def _default_log_types() -> list[str]:
    return ["api", "audit", "authenticator"]


class ClusterAutoscalerSettings(Closed):
    """The cluster-autoscaler (charts/cluster-autoscaler) scaling the node groups, with its IRSA role."""

    enabled: bool = True
    # Empty: CLUSTER_AUTOSCALER_RELEASES[version]. The image is <images.registry>/cluster-autoscaler.
    image_tag: Annotated[
        str,
        _matches(re.compile(f"^$|{_CLUSTER_AUTOSCALER_TAG.pattern}"), "a cluster-autoscaler release tag", "v1.32.4"),
    ] = ""


class EksSettings(Closed):
    """The EKS cluster; its Kubernetes provider deploys every Kubernetes component of the stack."""

    version: EksVersion = "1.32"
    # Empty: the API endpoint is private (reachable from inside the VPC only).
    endpoint_public_access_cidrs: Annotated[list[PublicAccessCidr], Field(max_length=40)] = Field(default_factory=list)
    logging: list[EKS_LOG_TYPES] = Field(default_factory=_default_log_types)  # type: ignore[arg-type]
    node_groups: NodeGroups = Field(default_factory=NodeGroups)
    cluster_autoscaler: ClusterAutoscalerSettings = Field(default_factory=ClusterAutoscalerSettings)

    @property
    def cluster_autoscaler_tag(self) -> str:
        """The autoscaler image's tag: the configured one, else the release pinned for ``version``."""
        return self.cluster_autoscaler.image_tag or CLUSTER_AUTOSCALER_RELEASES[self.version]

    @model_validator(mode="after")
    def _autoscaler_release(self) -> Self:
        settings, at = self.cluster_autoscaler, "clusterAutoscaler.imageTag"
        if not settings.enabled:
            if settings.image_tag:
                raise RuleError(
                    at,
                    settings.image_tag,
                    "is read only with clusterAutoscaler.enabled, so nothing would read it; remove it",
                )
            return self
        match = _CLUSTER_AUTOSCALER_TAG.fullmatch(settings.image_tag)
        if match is not None and match.group(1) != self.version:
            raise RuleError(
                at,
                settings.image_tag,
                f"is cluster-autoscaler {match.group(1)}, but the cluster runs Kubernetes {self.version}; the "
                f"autoscaler's minor must equal the cluster's: use a v{self.version}.x release",
            )
        if not settings.image_tag and self.version not in CLUSTER_AUTOSCALER_RELEASES:
            raise RuleError(
                at,
                "",
                f"no cluster-autoscaler release is pinned for EKS {self.version}; set a v{self.version}.x tag "
                "(mirrored into images.registry as cluster-autoscaler)",
            )
        return self

    @model_validator(mode="after")
    def _lists(self) -> Self:
        if not self.logging:
            raise RuleError(
                "logging", [], "is empty; the control-plane logs are the cluster's audit trail: keep at least audit"
            )
        _require_unique("logging", "type", list(self.logging))
        _require_unique("endpointPublicAccessCidrs", "network", list(self.endpoint_public_access_cidrs))
        return self


class EcrSettings(Closed):
    """ECR repositories for the images the stack deploys (tags immutable, scanned on push)."""

    keep_last: Annotated[int, Field(ge=1, le=10000)] = 30


class AwsSettings(Closed):
    region: AwsRegion
    tags: dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict
    )
    network: NetworkSettings | None = None
    eks: EksSettings | None = None
    ecr: EcrSettings | None = None
    # Encrypts the EKS cluster's Secrets; without it the stack creates a key (with rotation on).
    # An alias (ARN or alias/<name>) is resolved to its key's ARN where the program runs.
    kms_key_arn: KmsKeyArn | None = None

    @model_validator(mode="after")
    def _rules(self) -> Self:
        reserved = sorted(k for k in self.tags if k.lower().startswith("aws:"))
        if reserved:
            raise RuleError(
                f"tags.{reserved[0]}",
                self.tags[reserved[0]],
                "tag keys starting with 'aws:' are reserved by AWS",
            )
        if self.eks is not None and self.network is None:
            raise RuleError(
                "network",
                None,
                "is required with aws.eks: the cluster needs a VPC; add e.g. network: {cidr: 10.0.0.0/16}",
            )
        if self.eks is None and self.network is not None:
            raise RuleError(
                "network",
                self.network.model_dump(mode="json", by_alias=True, exclude_unset=True),
                "is read only with aws.eks (the VPC is the cluster's), so nothing would read it; "
                "remove aws.network or add aws.eks",
            )
        if self.kms_key_arn is not None:
            if self.eks is None:
                raise RuleError(
                    "kmsKeyArn",
                    self.kms_key_arn,
                    "encrypts the EKS cluster's Secrets and is read only with aws.eks; remove it "
                    "(buckets take objectStore.s3.kmsKeyArn)",
                )
            match = _KMS_REF.fullmatch(self.kms_key_arn)
            if match is not None and match.group(2) is not None and match.group(2) != self.region:
                raise RuleError(
                    "kmsKeyArn",
                    self.kms_key_arn,
                    f"is in region {match.group(2)}, but EKS needs a key of the cluster's region {self.region}",
                )
        return self


# Per section with a ``kind`` (field names): which kind reads each of its variant blocks.
VARIANTS: dict[str, dict[str, str]] = {
    "object_store": {"minio": "minio", "s3": "s3"},
    "postgres": {"in_cluster": "in-cluster", "rds": "rds"},
}


# Label prefixes a stack label may not use, with what it would break. The platform selects pods by
# qframe.io/* labels (client labels such as qframe.io/postgres-client open a service's
# NetworkPolicy), so a stack label there would grant every pod that access; kubernetes.io and
# k8s.io (and their subdomains, e.g. pod-security.kubernetes.io) belong to Kubernetes.
RESERVED_LABEL_PREFIXES: dict[str, str] = {
    "app.kubernetes.io/": "are set by the platform itself",
    "qframe.io/": "are set by the platform itself and select pods for NetworkPolicies (as a stack label, "
    "every pod would become e.g. a Postgres client)",
    "kubernetes.io/": "belong to Kubernetes (e.g. kubernetes.io/metadata.name, which DNS policies select on)",
    "k8s.io/": "belong to Kubernetes",
}


def _reserved_label_prefix(key: str) -> str | None:
    prefix, slash, _ = key.rpartition("/")
    if not slash:
        return None
    for reserved in RESERVED_LABEL_PREFIXES:
        domain = reserved.removesuffix("/")
        if prefix == domain or prefix.endswith("." + domain):
            return reserved
    return None


def _ecr_registry_rule(registry: str, region: str) -> None:
    """With aws.ecr the stack pulls what it pushes: images.registry must be this region's ECR."""
    host = rf"[0-9]{{12}}\.dkr\.ecr\.{re.escape(region)}\.amazonaws\.com(\.cn)?"
    if not re.fullmatch(rf"{host}(/[a-z0-9]+([._/-][a-z0-9]+)*)?", registry):
        raise RuleError(
            "images.registry",
            registry,
            f"must be this stack's ECR registry when aws.ecr is set (the repositories it creates are where "
            f"images are pushed and pulled): <account>.dkr.ecr.{region}.amazonaws.com[/<prefix>]",
        )


class StackConfig(Closed):
    """The whole stack. Defaults describe the laptop-sized dev stack."""

    environment: Literal["dev", "staging", "prod"] = "dev"
    namespace: NamespaceName = "qframe"
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    protect_stateful: bool = False
    images: Images = Field(default_factory=Images)
    object_store: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    jupyterhub: JupyterHubSettings = Field(default_factory=JupyterHubSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    aws: AwsSettings | None = None

    @model_validator(mode="after")
    def _cross_section_rules(self) -> Self:
        # Settings of the variant a stack does not use would be read by nothing; saying so beats
        # letting someone tune an RDS instance that is never created.
        for section_field, variants in VARIANTS.items():
            settings = getattr(self, section_field)
            for field, kind in variants.items():
                if kind != settings.kind and field in settings.model_fields_set:
                    section, key = _alias(type(self), section_field), _alias(type(settings), field)
                    raise RuleError(
                        f"{section}.{key}",
                        getattr(settings, field).model_dump(mode="json", by_alias=True, exclude_unset=True),
                        f"configures the {kind!r} variant, but {section}.kind is {settings.kind!r}, so nothing "
                        f"would read it; remove {section}.{key} or set {section}.kind: {kind}",
                    )
        self._aws_in_use()
        for kind_key, kind, needs_aws in (
            ("objectStore.kind", self.object_store.kind, self.object_store.kind == "s3"),
            ("postgres.kind", self.postgres.kind, self.postgres.kind == "rds"),
        ):
            if needs_aws and self.aws is None:
                raise RuleError(
                    kind_key,
                    kind,
                    f"needs an AWS account: also set {PROJECT}:aws with at least a region, "
                    "e.g. aws: {region: eu-west-1}",
                )
        if self.postgres.kind == "rds" and self.aws is not None and self.aws.network is not None:
            self._rds_in_stack_network()
        elif self.postgres.kind == "rds":
            rds = self.postgres.rds
            if len(rds.subnet_ids) < 2:
                raise RuleError(
                    "postgres.rds.subnetIds",
                    rds.subnet_ids,
                    "an RDS subnet group needs at least two subnets in different availability zones",
                )
            if not rds.security_group_ids:
                raise RuleError("postgres.rds.securityGroupIds", [], "is empty; name the security group(s) for RDS")
        if self.jupyterhub.auth.kind == "dummy" and self.environment != "dev":
            raise RuleError(
                "jupyterhub.auth.kind",
                "dummy",
                f"accepts one shared password for every listed user and is allowed only with environment: dev "
                f"(this stack is {self.environment}); choose native, github or generic-oauth",
            )
        for key, label in self.labels.items():
            reserved = _reserved_label_prefix(key)
            if reserved is not None:
                raise RuleError(
                    f"labels.{key}",
                    label,
                    f"{reserved}* labels (and those of its subdomains) {RESERVED_LABEL_PREFIXES[reserved]}; "
                    "choose another key such as team or cost-center",
                )
        return self

    def _rds_in_stack_network(self) -> None:
        """With aws.network, RDS lives in the stack's VPC: naming other subnets or groups is ambiguous."""
        rds = self.postgres.rds
        for key, field, value in (
            ("subnetIds", "subnet_ids", rds.subnet_ids),
            ("securityGroupIds", "security_group_ids", rds.security_group_ids),
        ):
            if field in rds.model_fields_set:
                raise RuleError(
                    f"postgres.rds.{key}",
                    list(value),
                    "is ambiguous with aws.network: RDS then uses the stack VPC's private subnets and a security "
                    "group admitting 5432 only from the EKS cluster; remove postgres.rds."
                    f"{key} (or aws.network/aws.eks to place RDS yourself)",
                )

    def _aws_in_use(self) -> None:
        if self.aws is None:
            return
        uses_aws = self.object_store.kind == "s3" or self.postgres.kind == "rds"
        if not uses_aws and self.aws.eks is None and self.aws.ecr is None:
            raise RuleError(
                "aws",
                self.aws.model_dump(mode="json", by_alias=True, exclude_unset=True),
                "is read only by objectStore.kind: s3, postgres.kind: rds, aws.eks and aws.ecr, and this stack "
                "uses neither an AWS kind nor aws.eks/aws.ecr; remove the aws section or choose an AWS kind",
            )
        if self.aws.ecr is not None:
            _ecr_registry_rule(self.images.registry, self.aws.region)


# --------------------------------------------------------------------------------------------
# Loading and error reporting
# --------------------------------------------------------------------------------------------


def _alias(model: type[BaseModel], field: str) -> str:
    return model.model_fields[field].alias or field


def variant_keys() -> list[tuple[str, str, str]]:
    """``(section, variant block, kind that reads it)`` for every variant block, keys as in stack files."""
    found = []
    for section_field, variants in VARIANTS.items():
        settings = model_of(StackConfig.model_fields[section_field].annotation)
        if settings is None:
            raise TypeError(f"VARIANTS names {section_field!r}, which is not a section model of StackConfig")
        found += [(_alias(StackConfig, section_field), _alias(settings, f), kind) for f, kind in variants.items()]
    return found


# Keys users will look for that no deployed component reads yet. Refused like any unknown key, but
# with a message saying why, so nobody tunes a service that is never created.
NOT_DEPLOYED_YET: dict[tuple[str, ...], str] = {}


class StackConfigError(ValueError):
    """A stack config that cannot be deployed; the message is written for the person who edits it."""


def parse_raw_config(raw: Mapping[str, Any], *, stack: str = "dev") -> StackConfig:
    """Builds the model from Pulumi's flat config map (``{"qframe-research:dask": "<json>"}``).

    Keys of other namespaces (``kubernetes:context``, ``aws:region``) belong to providers and are
    left alone. Structured values arrive from the Pulumi engine as JSON text, scalars as text.
    """
    sections: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT and name:
            sections[name] = _top_level_scalar(name, decode_value(value))
            continue
        problem = foreign_key_problem(key)
        if problem is not None:
            problems.append(problem)
    try:
        cfg = StackConfig.model_validate(sections)
    except ValidationError as exc:
        problems += error_lines(exc)
    if problems:
        raise StackConfigError(problems_message(problems, stack=stack))
    return cfg


def foreign_key_problem(key: str) -> str | None:
    """A problem line for a key outside the project's namespace that looks like a mistake, else None.

    Keys of other namespaces belong to providers, but one that is the project's name misspelled
    (``qframe-reserch:kafka``) would be read by nothing: the stack would deploy its defaults.
    """
    namespace, colon, name = key.partition(":")
    if not colon:
        return (
            f"  - {key}: has no namespace, so nothing reads it; Pulumi config keys are <namespace>:<name>, "
            f"e.g. {PROJECT}:{key}"
        )
    if namespace == PROJECT and not name:
        return f"  - {key}: names no key; write {PROJECT}:<key>, e.g. {PROJECT}:namespace"
    normalized = namespace.lower().replace("_", "-").replace(".", "-")
    if normalized == PROJECT or difflib.SequenceMatcher(None, normalized, PROJECT).ratio() >= 0.75:
        return (
            f"  - {key}: unknown namespace {namespace!r}, so nothing reads this key and the stack would "
            f"silently deploy the default; did you mean {PROJECT}:{name}?"
        )
    return None


def _top_level_scalar(name: str, value: Any) -> Any:
    """Pulumi hands top-level scalars over as text: "true"/"false" become booleans where one is expected."""
    field = next((f for n, f in StackConfig.model_fields.items() if name in (n, f.alias)), None)
    if field is not None and field.annotation is bool and value in ("true", "false"):
        return value == "true"
    return value


def decode_value(value: Any) -> Any:
    """A value of Pulumi's flat config map: structured values arrive as JSON text."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The camelCase keys allowed at the parent of ``loc`` (for 'unknown key' messages)."""
    model: Any = StackConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        model = model_of(field.annotation)
        if model is None:
            return []
    return sorted((f.alias or n) for n, f in model.model_fields.items())


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = model_of(arg)
        if found is not None:
            return found
    return None


def _split_path(path: str) -> tuple[int | str, ...]:
    """``"topics[2].name"`` -> ``("topics", 2, "name")``."""
    parts: list[int | str] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return tuple(parts)


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("dask", "maxWorkers")`` -> ``qframe-research:dask.maxWorkers``; list items as ``[i]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return f"{PROJECT}:{text}" if text else f"{PROJECT} (whole stack)"


def format_errors(exc: ValidationError, *, stack: str) -> str:
    return problems_message(error_lines(exc), stack=stack)


_TYPE_HINTS = {
    "int_type": "write a whole number without quotes (not true/false, not 3.0)",
    "bool_type": "write true or false without quotes",
    "string_type": 'write text (quote numbers such as cpu: "1")',
}


def error_lines(exc: ValidationError) -> list[str]:
    """One ``  - <key> = <value>: <problem>`` line per validation error."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = error["msg"].removeprefix("Value error, ")
        rule = error.get("ctx", {}).get("error")
        if isinstance(rule, RuleError):
            loc = (*loc, *_split_path(rule.at))
            lines.append(f"  - {key_path(loc)} = {json.dumps(rule.value, default=str)}: {message}")
            continue
        service = NOT_DEPLOYED_YET.get(tuple(str(part) for part in loc))
        if error["type"] == "extra_forbidden" and service is not None:
            message = (
                f"not deployed yet: this stack has no {service} component, so nothing would read this key; "
                f"remove it (it becomes a stack key when {service} is added to the platform)"
            )
        elif error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if loc else []
            message = "unknown key" + (f"; did you mean {close[0]}?" if close else "")
            message += f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] in _TYPE_HINTS:
            message = f"{message}; {_TYPE_HINTS[error['type']]}"
        value = "" if error["type"] == "missing" else f" = {json.dumps(error.get('input'), default=str)}"
        if error["type"] in ("model_type", "dict_type"):
            value = ""
        lines.append(f"  - {key_path(loc)}{value}: {message}")
    return lines


def problems_message(lines: list[str], *, stack: str) -> str:
    """The whole error text: every problem at once, and how to fix it."""
    count = len(lines)
    return (
        f"Stack config of stack '{stack}' is invalid ({count} problem{'s' if count != 1 else ''}); "
        "nothing was deployed.\n"
        + "\n".join(lines)
        + f"\nFix it in Pulumi.{stack}.yaml, or with `pulumi config set --path '<key>' <value>` "
        f"(keys above without the '{PROJECT}:' prefix)."
    )
