"""infra/components/object_store/s3.py and postgres/rds.py: pure builders and components under mocks.

Everything is asserted from the inputs the mock engine received; no AWS account is involved.
Outputs the AWS provider would compute (bucket ARNs, the instance address, the policy ARN) do not
exist under mocks, which is why the component derives ARNs from bucket names.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from infra.components.object_store.s3 import (
    S3ObjectStore,
    S3ObjectStoreArgs,
    bucket_policy_document,
    lifecycle_rules,
    workload_policy_document,
)
from infra.components.postgres.rds import MIN_BACKUP_RETENTION_DAYS, RdsPostgres, RdsPostgresArgs
from infra.components.postgres.rds_init import admin_dsn, config_map_data, passwords_digest
from infra.config import parse_raw_config
from infra.images import image_ref
from infra.offline import MOCK_SECRET_PREFIX, REPO_ROOT, ProgramRun, load_stack_file, run_program
from infra.program import load_stack_config
from infra.providers import aws_provider, aws_tags
from infra.scope import Scope

pytestmark = pytest.mark.unit

AWS_STACK = REPO_ROOT / "tests" / "fixtures" / "stacks" / "aws.happy.yaml"
DATA_LAKE = "acme-qframe-data-lake"
MLFLOW = "acme-qframe-mlflow"
BUCKETS = (DATA_LAKE, MLFLOW)
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "aws:s3/bucket:Bucket"
SECRET = "kubernetes:core/v1:Secret"
INSTANCE = "aws:rds/instance:Instance"
DEV_OVERRIDES: dict[str, Any] = {"environment": "dev"}
OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def _program() -> None:
    cfg = load_stack_config()
    assert cfg.aws is not None
    namespace = pulumi.Output.from_input(cfg.namespace)
    tags = aws_tags(cfg.aws, environment=cfg.environment, stack=pulumi.get_stack())
    # As in infra/program.py: one provider for the stack, reaching the components through providers=.
    opts = pulumi.ResourceOptions(providers={"aws": aws_provider(cfg.aws.region, tags)})
    store = S3ObjectStore(
        "object-store",
        S3ObjectStoreArgs(
            buckets=cfg.object_store.buckets,
            settings=cfg.object_store.s3,
            region=cfg.aws.region,
            tags=tags,
            protect=cfg.protect_stateful,
        ),
        opts=opts,
    )
    postgres = RdsPostgres(
        "postgres",
        RdsPostgresArgs(
            namespace=namespace,
            scope=Scope.of(cfg),
            settings=cfg.postgres.rds,
            production=cfg.environment != "dev",
            tags=tags,
            image=image_ref(cfg.images, "postgres"),
        ),
        opts=opts,
    )
    pulumi.export("object_store_endpoint", store.endpoint)
    pulumi.export("object_store_buckets", store.buckets)
    pulumi.export("object_store_credentials_secrets", store.credentials_secrets)
    pulumi.export("postgres_port", postgres.port)
    pulumi.export("postgres_superuser_secret", postgres.superuser_secret)
    pulumi.export("postgres_connection_secrets", postgres.connection_secrets)


def run(**overrides: Any) -> ProgramRun:
    return run_program(AWS_STACK, overrides=overrides, program=_program)


@pytest.fixture(scope="module")
def aws_run() -> ProgramRun:
    return run()


def by_bucket(run: ProgramRun, type_token: str) -> dict[str, dict[str, Any]]:
    found = {r.inputs["bucket"]: r.inputs for r in run.of_type(type_token)}
    assert sorted(found) == sorted(BUCKETS), f"{type_token}: {sorted(found)}"
    return found


# --- pure builders -----------------------------------------------------------------------------


def test_bucket_policy_denies_insecure_transport_for_bucket_and_objects() -> None:
    document = bucket_policy_document("arn:aws:s3:::b")
    [statement] = document["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_workload_policy_is_exact_without_kms() -> None:
    document = workload_policy_document(["arn:aws:s3:::a", "arn:aws:s3:::b"], None)
    assert [(s["Action"], s["Resource"]) for s in document["Statement"]] == [
        (["s3:ListBucket", "s3:GetBucketLocation"], ["arn:aws:s3:::a", "arn:aws:s3:::b"]),
        (OBJECT_ACTIONS, ["arn:aws:s3:::a/*", "arn:aws:s3:::b/*"]),
    ]
    assert all(s["Effect"] == "Allow" for s in document["Statement"])


def test_workload_policy_adds_kms_only_for_the_key() -> None:
    document = workload_policy_document(["arn:aws:s3:::a"], KMS_KEY)
    kms = document["Statement"][-1]
    assert kms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"]
    assert kms["Resource"] == [KMS_KEY]


def test_workload_policy_refuses_wildcards_and_empty_lists() -> None:
    with pytest.raises(ValueError, match="wildcard"):
        workload_policy_document(["arn:aws:s3:::*"], None)
    with pytest.raises(ValueError, match="at least one"):
        workload_policy_document([], None)


def test_lifecycle_rules_expire_exactly_the_scratch_prefix() -> None:
    cfg = parse_raw_config(load_stack_file(AWS_STACK), stack="aws")
    rules = lifecycle_rules(
        scratch_prefix=cfg.object_store.buckets.scratch_prefix,
        expiration_days=cfg.object_store.s3.scratch_expiration_days,
    )
    expiring = [r for r in rules if "expiration" in r]
    assert expiring == [
        {
            "id": "expire-scratch",
            "status": "Enabled",
            "filter": {"prefix": "scratch/"},
            "expiration": {"days": 14},
            "noncurrent_version_expiration": {"noncurrent_days": 14},
        }
    ]
    assert any("abort_incomplete_multipart_upload" in r for r in rules)


# --- S3 under mocks ------------------------------------------------------------------------------


def test_buckets_named_from_config_with_tags(aws_run: ProgramRun) -> None:
    buckets = {r.inputs["bucket"]: r for r in aws_run.of_type(BUCKET)}
    assert sorted(buckets) == sorted(BUCKETS)
    for bucket in buckets.values():
        assert bucket.inputs["forceDestroy"] is False
        tags = bucket.inputs["tags"]
        assert tags["owner"] == "platform"  # from cfg.aws.tags
        assert {tags["project"], tags["stack"], tags["environment"]} == {"qframe-research", "aws", "staging"}
        assert not bucket.protect  # protectStateful is off in this stack


def test_buckets_protected_when_stateful_protection_is_on() -> None:
    protected = run(protectStateful="true")
    for bucket in protected.of_type(BUCKET):
        assert bucket.protect
        assert bucket.retain_on_delete
    assert protected.one(INSTANCE).protect


def test_encryption_uses_the_configured_kms_key(aws_run: ProgramRun) -> None:
    for inputs in by_bucket(
        aws_run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).values():
        [rule] = inputs["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KMS_KEY}


def test_encryption_falls_back_to_sse_s3_without_a_key() -> None:
    raw = load_stack_file(AWS_STACK)
    object_store = json.loads(raw["qframe-research:objectStore"])
    del object_store["s3"]["kmsKeyArn"]
    without_key = run(objectStore=object_store)
    for inputs in by_bucket(
        without_key, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).values():
        assert inputs["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    policy = json.loads(without_key.one("aws:iam/policy:Policy").inputs["policy"])
    assert not any(a.startswith("kms:") for s in policy["Statement"] for a in s["Action"])


def test_versioning_enabled(aws_run: ProgramRun) -> None:
    for inputs in by_bucket(aws_run, "aws:s3/bucketVersioning:BucketVersioning").values():
        assert inputs["versioningConfiguration"] == {"status": "Enabled"}


def test_public_access_fully_blocked(aws_run: ProgramRun) -> None:
    for inputs in by_bucket(aws_run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").values():
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            assert inputs[flag] is True, flag


def test_ownership_enforced(aws_run: ProgramRun) -> None:
    for inputs in by_bucket(aws_run, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").values():
        assert inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_bucket_policy_is_tls_only(aws_run: ProgramRun) -> None:
    for name, inputs in by_bucket(aws_run, "aws:s3/bucketPolicy:BucketPolicy").items():
        [statement] = json.loads(inputs["policy"])["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert statement["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]


def test_lifecycle_expires_scratch_after_configured_days(aws_run: ProgramRun) -> None:
    for inputs in by_bucket(aws_run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").values():
        expiring = [r for r in inputs["rules"] if "expiration" in r]
        assert len(expiring) == 1
        assert expiring[0]["filter"] == {"prefix": "scratch/"}
        assert expiring[0]["expiration"] == {"days": 14}
        assert expiring[0]["status"] == "Enabled"
        aborts = [r for r in inputs["rules"] if "abortIncompleteMultipartUpload" in r]
        assert aborts
        assert aborts[0]["status"] == "Enabled"


def test_iam_policy_exact_actions_and_resources(aws_run: ProgramRun) -> None:
    policy = aws_run.one("aws:iam/policy:Policy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    arns = [f"arn:aws:s3:::{b}" for b in BUCKETS]
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [
        ("Allow", ["s3:ListBucket", "s3:GetBucketLocation"], arns),
        ("Allow", OBJECT_ACTIONS, [f"{arn}/*" for arn in arns]),
        ("Allow", ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"], [KMS_KEY]),
    ]
    for statement in statements:
        assert "*" not in statement["Action"]
        assert "s3:*" not in statement["Action"]
        assert all(not a.endswith("*") for a in statement["Action"])
        assert "*" not in statement["Resource"]
    assert policy.inputs["tags"]["owner"] == "platform"


def test_policy_attached_to_the_configured_role(aws_run: ProgramRun) -> None:
    attachment = aws_run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["role"] == "qframe-research-workloads"
    assert aws_run.of_type("aws:iam/userPolicyAttachment:UserPolicyAttachment") == []


def test_policy_attached_to_a_user_when_configured() -> None:
    object_store = json.loads(load_stack_file(AWS_STACK)["qframe-research:objectStore"])
    object_store["s3"]["principal"] = {"kind": "user", "name": "qframe-ci"}
    user_run = run(objectStore=object_store)
    assert user_run.one("aws:iam/userPolicyAttachment:UserPolicyAttachment").inputs["user"] == "qframe-ci"
    assert user_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []


def test_aws_resources_use_an_explicit_provider_in_the_configured_region(aws_run: ProgramRun) -> None:
    providers = aws_run.of_type("pulumi:providers:aws")
    assert [p.name for p in providers] == ["aws"]
    for provider in providers:
        assert provider.inputs["region"] == "eu-west-1"
    provider_urns = {p.urn for p in providers}
    for resource in aws_run.resources:
        if resource.type.startswith("aws:"):
            assert any(resource.provider.startswith(urn) for urn in provider_urns), resource.name


def test_object_store_outputs_match_the_in_cluster_names(aws_run: ProgramRun) -> None:
    assert aws_run.outputs["object_store_endpoint"] == "https://s3.eu-west-1.amazonaws.com"
    assert aws_run.outputs["object_store_buckets"] == {"data_lake": DATA_LAKE, "mlflow_artifacts": MLFLOW}
    assert aws_run.outputs["object_store_credentials_secrets"] == {}


# --- RDS under mocks -----------------------------------------------------------------------------


def test_rds_instance_is_hardened_on_staging(aws_run: ProgramRun) -> None:
    inputs = aws_run.one(INSTANCE).inputs
    assert inputs["engine"] == "postgres"
    assert inputs["engineVersion"] == "16.4"
    assert inputs["instanceClass"] == "db.m6g.large"
    assert inputs["allocatedStorage"] == 100
    assert inputs["storageEncrypted"] is True
    assert inputs["publiclyAccessible"] is False
    assert inputs["deletionProtection"] is True
    assert inputs["backupRetentionPeriod"] == 14
    assert inputs["skipFinalSnapshot"] is False
    assert inputs["finalSnapshotIdentifier"]
    assert inputs["copyTagsToSnapshot"] is True
    assert inputs["multiAz"] is True
    assert inputs["vpcSecurityGroupIds"] == ["sg-0a1b2c3d4e5f60718"]
    assert inputs["username"] == "qframe_admin"
    assert inputs["tags"]["owner"] == "platform"


def test_rds_subnet_group_from_config(aws_run: ProgramRun) -> None:
    group = aws_run.one("aws:rds/subnetGroup:SubnetGroup")
    assert group.inputs["subnetIds"] == ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"]
    assert group.inputs["tags"]["owner"] == "platform"


def test_backup_retention_is_raised_to_the_minimum_outside_dev() -> None:
    postgres = json.loads(load_stack_file(AWS_STACK)["qframe-research:postgres"])
    postgres["rds"]["backupRetentionDays"] = 1
    inputs = run(postgres=postgres).one(INSTANCE).inputs
    assert inputs["backupRetentionPeriod"] == MIN_BACKUP_RETENTION_DAYS


def test_dev_stack_has_no_deletion_protection() -> None:
    inputs = run(**DEV_OVERRIDES).one(INSTANCE).inputs
    assert inputs["deletionProtection"] is False
    assert inputs["skipFinalSnapshot"] is False
    assert inputs["storageEncrypted"] is True


def test_master_password_is_secret_and_never_plain(aws_run: ProgramRun) -> None:
    instance = aws_run.one(INSTANCE)
    assert "password" in instance.secret_inputs
    assert instance.inputs["password"].startswith(MOCK_SECRET_PREFIX)
    for resource in aws_run.resources:
        for key, value in resource.inputs.items():
            if key in resource.secret_inputs or key == "__provider":
                continue
            assert MOCK_SECRET_PREFIX not in json.dumps(value, default=str), f"{resource.name}.{key}"
    assert not any(MOCK_SECRET_PREFIX in json.dumps(v, default=str) for v in aws_run.outputs.values())


def test_consumer_secrets_like_the_in_cluster_variant(aws_run: ProgramRun) -> None:
    secrets = {r.inputs["metadata"]["name"]: r for r in aws_run.of_type(SECRET)}
    consumers = ("mlflow", "catalog", "jupyterhub", "mlflow-auth")
    assert sorted(secrets) == sorted([*(f"postgres-{c}" for c in consumers), "postgres-superuser"])
    for consumer in consumers:
        secret = secrets[f"postgres-{consumer}"]
        assert "stringData" in secret.secret_inputs
        assert secret.inputs["metadata"]["namespace"] == "qframe-research"
        data = secret.inputs["stringData"]
        assert set(data) == {"username", "password", "database", "host", "port", "uri"}
        assert data["port"] == "5432"
        assert data["password"].startswith(MOCK_SECRET_PREFIX)
        assert data["uri"].startswith(f"postgresql://{data['username']}:{data['password']}@")
    assert "stringData" in secrets["postgres-superuser"].secret_inputs
    assert aws_run.outputs["postgres_connection_secrets"] == {c: f"postgres-{c}" for c in consumers}
    assert aws_run.outputs["postgres_superuser_secret"] == "postgres-superuser"
    assert aws_run.outputs["postgres_port"] == 5432


# --- RDS per-consumer logins: the init Job -------------------------------------------------------

MASTER_PASSWORD = f"{MOCK_SECRET_PREFIX}postgres-master-password"
JOB = "kubernetes:batch/v1:Job"
RDS_CONSUMERS = ("mlflow", "catalog", "jupyterhub", "mlflow-auth")


def test_consumer_secrets_carry_their_own_login_never_the_master(aws_run: ProgramRun) -> None:
    secrets = {r.inputs["metadata"]["name"]: r.inputs["stringData"] for r in aws_run.of_type(SECRET)}
    for consumer in RDS_CONSUMERS:
        data = secrets[f"postgres-{consumer}"]
        login = consumer.replace("-", "_")
        own = f"{MOCK_SECRET_PREFIX}postgres-{consumer}-password"
        assert data == {
            "username": login,
            "password": own,
            "database": login,
            "host": "postgres-instance.mock-rds.example",
            "port": "5432",
            "uri": f"postgresql://{login}:{own}@postgres-instance.mock-rds.example:5432/{login}?sslmode=require",
        }
        assert MASTER_PASSWORD not in json.dumps(data)
    # The master login is in exactly one Secret.
    holders = [name for name, data in secrets.items() if MASTER_PASSWORD in json.dumps(data)]
    assert holders == ["postgres-superuser"]
    assert secrets["postgres-superuser"] == {"postgres-password": MASTER_PASSWORD, "username": "qframe_admin"}


def test_init_job_runs_the_chart_script_against_the_rds_endpoint(aws_run: ProgramRun) -> None:
    job = aws_run.one(JOB)
    assert job.inputs["metadata"]["name"] == "postgres-init-databases"
    assert job.inputs["metadata"]["namespace"] == "qframe-research"
    # It runs after the instance and every Secret it mounts exist.
    needs = {aws_run.by_urn(urn).name for urn in job.depends_on}
    assert {"postgres-instance", "postgres-superuser", *(f"postgres-{c}" for c in RDS_CONSUMERS)} <= needs
    pod = job.inputs["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"].endswith("/postgres:" + container["image"].rsplit(":", 1)[1])
    command = container["command"]
    assert command[:2] == ["python3", "/opt/init-databases/init-databases.py"]
    assert command[command.index("--dsn") + 1] == (
        "host=postgres-instance.mock-rds.example port=5432 user=qframe_admin dbname=qframe connect_timeout=5"
        " sslmode=require"
    )
    assert command[command.index("--password-file") + 1] == "/etc/init-databases/secrets/superuser/password"
    assert container["env"] == [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    assert MASTER_PASSWORD not in json.dumps(job.inputs)
    # Hardened like every pod of the stack.
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False
    assert set(container["resources"]) == {"requests", "limits"}
    # The superuser Secret and each consumer's password key, one file each.
    [projected] = [v["projected"] for v in pod["volumes"] if "projected" in v]
    mounted = {s["secret"]["name"]: s["secret"]["items"] for s in projected["sources"]}
    assert mounted["postgres-superuser"] == [{"key": "postgres-password", "path": "superuser/password"}]
    for consumer in RDS_CONSUMERS:
        login = consumer.replace("-", "_")
        assert mounted[f"postgres-{consumer}"] == [{"key": "password", "path": f"consumers/{login}/password"}]
    annotations = job.inputs["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["qframe.io/passwords-digest"]) == 64


def test_only_the_init_job_mounts_the_master_login(aws_run: ProgramRun) -> None:
    referencing = [
        r.name
        for r in aws_run.resources
        if r.type != SECRET and r.custom and "postgres-superuser" in json.dumps(r.inputs, default=str)
    ]
    assert referencing == ["postgres-init-databases"]


def test_init_job_script_is_the_charts_own_and_lists_every_consumer(aws_run: ProgramRun) -> None:
    config_map = aws_run.one("kubernetes:core/v1:ConfigMap", "postgres-init-databases").inputs
    script = (REPO_ROOT / "charts" / "postgres" / "files" / "init-databases.py").read_text(encoding="utf-8")
    assert config_map["data"]["init-databases.py"] == script
    assert json.loads(config_map["data"]["consumers.json"]) == [
        {
            "name": c.replace("-", "_"),
            "passwordFile": f"/etc/init-databases/secrets/consumers/{c.replace('-', '_')}/password",
        }
        for c in RDS_CONSUMERS
    ]
    assert MOCK_SECRET_PREFIX not in json.dumps(config_map)


def test_init_job_egress_is_postgres_port_only(aws_run: ProgramRun) -> None:
    policy = aws_run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "postgres-init-databases-egress").inputs
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"]
    # Subnets given by id: their CIDRs are unknown to the program, so the port is the limit.
    assert spec["egress"] == [{"ports": [{"protocol": "TCP", "port": 5432}]}]
    labels = aws_run.one(JOB).inputs["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= labels.items()
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "init-databases"


def test_passwords_digest_follows_every_password() -> None:
    base = passwords_digest(["master", "a", "b"])
    assert passwords_digest(["master", "a", "b"]) == base
    assert passwords_digest(["master", "a", "c"]) != base
    assert passwords_digest(["master", "ab", ""]) != passwords_digest(["master", "a", "b"])


def test_init_job_verifies_the_server_with_a_ca_bundle() -> None:
    assert admin_dsn("db.example", user="u", dbname="d", verify_ca=True).endswith(
        "sslmode=verify-full sslrootcert=/opt/init-databases/rds-ca.pem"
    )
    assert config_map_data(["mlflow"], "-----BEGIN CERTIFICATE-----\n")["rds-ca.pem"].startswith("-----BEGIN")
    assert "rds-ca.pem" not in config_map_data(["mlflow"], None)


PEM = "-----BEGIN CERTIFICATE-----\nMIIBmock\n-----END CERTIFICATE-----\n"


def test_with_the_rds_ca_bundle_the_init_job_verifies_the_server() -> None:
    postgres = json.loads(load_stack_file(AWS_STACK)["qframe-research:postgres"])
    postgres["rds"]["caBundle"] = PEM
    run = run_program(AWS_STACK, overrides={"postgres": postgres}, program=_program)
    [container] = run.one(JOB).inputs["spec"]["template"]["spec"]["containers"]
    dsn = container["command"][container["command"].index("--dsn") + 1]
    assert dsn.endswith(" sslmode=verify-full sslrootcert=/opt/init-databases/rds-ca.pem")
    config_map = run.one("kubernetes:core/v1:ConfigMap", "postgres-init-databases").inputs
    assert config_map["data"]["rds-ca.pem"] == PEM
