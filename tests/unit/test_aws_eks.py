"""The ``aws`` stack on EKS under mocks: network, cluster, node groups, IRSA and ECR (issue 17).

Everything is asserted from the inputs the mock engine received. Outputs only AWS computes (role and
OIDC provider ARNs, the cluster's endpoint and issuer) come from ``infra.offline.computed_outputs``,
recognisable stand-ins, so the documents built from them (trust policies, the kubeconfig) are
asserted exactly.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections import Counter
from typing import Any

import pytest

from infra.components import dask, ray
from infra.components.aws.cluster_autoscaler import DESCRIBE_ACTIONS
from infra.components.aws.ecr import lifecycle_policy, repository_names
from infra.components.aws.eks import kubeconfig, vpc_config
from infra.components.aws.irsa import WorkloadAccess, permission_policy, trust_policy
from infra.components.aws.kms import alias_name
from infra.components.aws.network import subnet_plan
from infra.components.operators.platform_env import ComputePlatform
from infra.config import DaskSettings, NotebookGpu, RayGpu, RaySettings, StackConfig, parse_raw_config
from infra.images import deployed_images, image_ref
from infra.offline import (
    MOCK_ACCOUNT,
    MOCK_ZONES,
    REPO_ROOT,
    ProgramRun,
    load_stack_file,
    mock_alias_key_arn,
    run_program,
)
from infra.scope import Scope
from tests.harness.operator_crs import cr_schema_errors, pods_as_workloads
from tests.harness.security import violations

pytestmark = pytest.mark.unit

AWS_STACK = REPO_ROOT / "Pulumi.aws.yaml"
EKS_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "stacks" / "aws-eks.happy.yaml"
LAKE, ARTIFACTS = "example-qframe-data-lake", "example-qframe-mlflow-artifacts"
BUCKET_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CLUSTER = "qframe-research-aws"
NAMESPACE = "qframe"
ISSUER = "oidc.mock-eks.example/id/eks-cluster"
OIDC_ARN = f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{ISSUER}"
ROLE, POLICY = "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"
CLUSTER_TYPE, NODE_GROUP = "aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup"
SUBNET, NAT, ROUTES = "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway", "aws:ec2/routeTable:RouteTable"
REPOSITORY = "aws:ecr/repository:Repository"

# Every AWS resource type of the example stack, with its count: S3 + RDS as before, plus the VPC over
# three zones (NAT per zone), the cluster with a key of its own, two node groups, five IRSA roles,
# one ECR repository per deployed image, and RDS in the stack's VPC behind a security group of its own.
EXPECTED_AWS_COUNTS = {
    # The cluster-autoscaler's discovery tags on both groups' Auto Scaling groups, plus the compute
    # group's node-template label and taint (test_aws_cluster_autoscaler.py); its role, policy and
    # ECR repository are counted with the others.
    "aws:autoscaling/tag:Tag": 6,
    "aws:ec2/eip:Eip": 3,
    "aws:ec2/internetGateway:InternetGateway": 1,
    "aws:ec2/natGateway:NatGateway": 3,
    "aws:ec2/routeTable:RouteTable": 4,
    "aws:ec2/routeTableAssociation:RouteTableAssociation": 6,
    "aws:ec2/securityGroup:SecurityGroup": 2,
    "aws:ec2/subnet:Subnet": 6,
    "aws:ec2/vpc:Vpc": 1,
    "aws:ec2/vpcEndpoint:VpcEndpoint": 3,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": 10,
    "aws:ecr/repository:Repository": 10,
    "aws:eks/cluster:Cluster": 1,
    "aws:eks/nodeGroup:NodeGroup": 2,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": 1,
    "aws:iam/policy:Policy": 1,
    "aws:iam/role:Role": 8,
    "aws:iam/rolePolicy:RolePolicy": 6,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 4,
    "aws:kms/key:Key": 1,
    "aws:rds/instance:Instance": 1,
    "aws:rds/subnetGroup:SubnetGroup": 1,
    "aws:s3/bucket:Bucket": 2,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 2,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 2,
    "aws:s3/bucketPolicy:BucketPolicy": 2,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 2,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 2,
    "aws:s3/bucketVersioning:BucketVersioning": 2,
    "pulumi:providers:aws": 1,
    "pulumi:providers:kubernetes": 1,
    "qframe:aws:ClusterAutoscaler": 1,
    "qframe:aws:Ecr": 1,
    "qframe:aws:EksCluster": 1,
    "qframe:aws:Irsa": 1,
    "qframe:aws:Network": 1,
    "qframe:aws:NodeGroups": 1,
    "qframe:aws:ObjectStore": 1,
    "qframe:aws:Postgres": 1,
}
NODE_POLICIES = [
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
]
OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def aws_section(**changes: Any) -> dict[str, Any]:
    section: dict[str, Any] = copy.deepcopy(json.loads(load_stack_file(AWS_STACK)["qframe-research:aws"]))
    section.update(changes)
    return section


def eks_section(**changes: Any) -> dict[str, Any]:
    return aws_section(eks={**aws_section()["eks"], **changes})


@pytest.fixture(scope="module")
def aws_run() -> ProgramRun:
    return run_program(AWS_STACK)


def aws_type_counts(run: ProgramRun) -> dict[str, int]:
    counts = Counter(r.type for r in run.resources)
    return {t: n for t, n in sorted(counts.items()) if t.startswith(("aws:", "qframe:aws:", "pulumi:providers:"))}


def policy_documents(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """Every IAM document the program hands to AWS: role trust policies, inline and managed policies."""
    found = {}
    for resource in run.resources:
        if resource.type == ROLE:
            found[f"{resource.name}.assumeRolePolicy"] = json.loads(resource.inputs["assumeRolePolicy"])
        elif resource.type in (POLICY, "aws:iam/policy:Policy"):
            found[f"{resource.name}.policy"] = json.loads(resource.inputs["policy"])
    return found


def by_name(run: ProgramRun, type_token: str) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in run.of_type(type_token)}


# --- the whole stack ------------------------------------------------------------------------------


def test_the_example_stack_registers_exactly_these_aws_resources(aws_run: ProgramRun) -> None:
    assert aws_type_counts(aws_run) == EXPECTED_AWS_COUNTS


def test_eks_adds_aws_resources_only_the_kubernetes_objects_are_the_same(aws_run: ProgramRun) -> None:
    without = aws_section()
    for key in ("network", "eks", "ecr"):
        del without[key]
    # Without ECR the stack pulls from a plain registry prefix again; without the VPC RDS needs subnets.
    postgres = json.loads(load_stack_file(AWS_STACK)["qframe-research:postgres"])
    postgres["rds"].update(subnetIds=["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"])
    postgres["rds"].update(securityGroupIds=["sg-0a1b2c3d4e5f60718"])
    plain = run_program(AWS_STACK, overrides={"aws": without, "images": {"registry": "qframe"}, "postgres": postgres})

    def kubernetes(run: ProgramRun) -> list[str]:
        return sorted(f"{r.type}::{r.name}" for r in run.resources if r.type.startswith("kubernetes:"))

    irsa_accounts = [
        "kubernetes:core/v1:ServiceAccount::irsa-dask-workers-account",
        "kubernetes:core/v1:ServiceAccount::irsa-ray-workers-account",
    ]
    autoscaler = ["kubernetes:helm.sh/v3:Release::cluster-autoscaler-release"]
    assert kubernetes(aws_run) == sorted(kubernetes(plain) + irsa_accounts + autoscaler)
    assert not plain.of_type(CLUSTER_TYPE)
    assert [p.name for p in plain.of_type("pulumi:providers:kubernetes")] == ["k8s"]
    assert "kubeconfig" not in plain.one("pulumi:providers:kubernetes").inputs


def test_kubernetes_objects_use_the_provider_built_from_the_cluster(aws_run: ProgramRun) -> None:
    provider = aws_run.one("pulumi:providers:kubernetes")
    config = json.loads(provider.inputs["kubeconfig"])
    assert config["clusters"] == [
        {
            "name": CLUSTER,
            "cluster": {"server": "https://eks-cluster.mock-eks.example", "certificate-authority-data": "bW9jay1jYQ=="},
        }
    ]
    [user] = config["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"] == [
        "eks",
        "get-token",
        "--cluster-name",
        CLUSTER,
        "--region",
        "eu-west-1",
        "--output",
        "json",
    ]
    kubernetes = [r for r in aws_run.resources if r.type.startswith("kubernetes:")]
    assert len(kubernetes) > 20
    for resource in kubernetes:
        assert resource.provider.startswith(provider.urn), f"{resource.name} uses {resource.provider!r}"


def test_dependency_order_cluster_then_node_groups_then_kubernetes(aws_run: ProgramRun) -> None:
    cluster = aws_run.one(CLUSTER_TYPE)
    groups = aws_run.of_type(NODE_GROUP)
    assert groups
    for group in groups:
        assert cluster.urn in group.depends_on, group.name
        attachments = [r.urn for r in aws_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
        node_attachments = [u for u in attachments if "node-groups-role-" in u]
        assert set(node_attachments) <= set(group.depends_on), group.name
    provider = aws_run.one("pulumi:providers:kubernetes")
    # Every Kubernetes object uses this provider, so each waits for the nodes it will run on.
    assert {g.urn for g in groups} <= set(provider.depends_on)
    assert cluster.urn in provider.depends_on
    role = aws_run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "eks-role-AmazonEKSClusterPolicy")
    assert role.urn in cluster.depends_on


def test_no_static_aws_keys_anywhere(aws_run: ProgramRun) -> None:
    for run in (aws_run, run_program(EKS_FIXTURE)):
        assert not [r for r in run.resources if r.type.startswith("aws:iam/accessKey")]
        assert run.outputs["object_store_credentials_secrets"] == {}
        secrets = [r for r in run.resources if r.type == "kubernetes:core/v1:Secret"]
        for secret in secrets:
            data = json.dumps(secret.inputs.get("stringData", {})).lower()
            assert "aws_secret_access_key" not in data, secret.name
            assert "aws_access_key_id" not in data, secret.name


# --- network --------------------------------------------------------------------------------------


def test_subnet_plan_carves_private_blocks_and_small_public_subnets() -> None:
    assert [(z.private, z.public) for z in subnet_plan("10.40.0.0/16", 3)] == [
        ("10.40.0.0/19", "10.40.224.0/22"),
        ("10.40.32.0/19", "10.40.228.0/22"),
        ("10.40.64.0/19", "10.40.232.0/22"),
    ]
    six = subnet_plan("172.16.16.0/20", 6)
    assert six[-1].private == "172.16.26.0/23"
    assert six[-1].public == "172.16.31.64/26"
    # No two subnets overlap.
    cidrs = [ipaddress.IPv4Network(c) for zone in six for c in (zone.private, zone.public)]
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1 :])
    with pytest.raises(ValueError, match="at most 6 zones"):
        subnet_plan("10.0.0.0/16", 7)


def test_subnets_across_zones_with_the_eks_tags(aws_run: ProgramRun) -> None:
    subnets = by_name(aws_run, SUBNET)
    plan = subnet_plan("10.40.0.0/16", 3)
    for index, zone in enumerate(plan):
        private, public = subnets[f"network-private-{index}"], subnets[f"network-public-{index}"]
        assert private["cidrBlock"] == zone.private
        assert public["cidrBlock"] == zone.public
        assert private["availabilityZone"] == public["availabilityZone"] == MOCK_ZONES[index]
        assert private["tags"][f"kubernetes.io/cluster/{CLUSTER}"] == "shared"
        assert private["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert "kubernetes.io/role/elb" not in private["tags"]
        assert public["tags"]["kubernetes.io/role/elb"] == "1"
        assert private["mapPublicIpOnLaunch"] is False
        assert public["mapPublicIpOnLaunch"] is False
    vpc = aws_run.one("aws:ec2/vpc:Vpc").inputs
    assert vpc["cidrBlock"] == "10.40.0.0/16"
    assert vpc["enableDnsHostnames"] is True
    assert vpc["enableDnsSupport"] is True


def test_nat_per_zone_each_private_route_table_uses_its_own(aws_run: ProgramRun) -> None:
    nats = by_name(aws_run, NAT)
    assert sorted(nats) == ["network-nat-0", "network-nat-1", "network-nat-2"]
    for index in range(3):
        assert nats[f"network-nat-{index}"]["subnetId"] == f"network-public-{index}-id"
        routes = by_name(aws_run, ROUTES)[f"network-private-{index}"]["routes"]
        assert routes == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": f"network-nat-{index}-id"}]
    assert by_name(aws_run, ROUTES)["network-public"]["routes"] == [
        {"cidrBlock": "0.0.0.0/0", "gatewayId": "network-igw-id"}
    ]


def test_one_nat_serves_every_zone_when_configured() -> None:
    network = {**aws_section()["network"], "natGateways": "one"}
    run = run_program(AWS_STACK, overrides={"aws": aws_section(network=network)})
    assert list(by_name(run, NAT)) == ["network-nat-0"]
    assert len(run.of_type("aws:ec2/eip:Eip")) == 1
    for index in range(3):
        routes = by_name(run, ROUTES)[f"network-private-{index}"]["routes"]
        assert routes == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": "network-nat-0-id"}]


def test_vpc_endpoints_for_s3_and_ecr(aws_run: ProgramRun) -> None:
    endpoints = by_name(aws_run, "aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoints["network-s3"]["serviceName"] == "com.amazonaws.eu-west-1.s3"
    assert endpoints["network-s3"]["vpcEndpointType"] == "Gateway"
    assert sorted(endpoints["network-s3"]["routeTableIds"]) == [f"network-private-{i}-id" for i in range(3)]
    for service in ("ecr.api", "ecr.dkr"):
        endpoint = endpoints[f"network-{service.replace('.', '-')}"]
        assert endpoint["serviceName"] == f"com.amazonaws.eu-west-1.{service}"
        assert endpoint["vpcEndpointType"] == "Interface"
        assert endpoint["privateDnsEnabled"] is True
        assert endpoint["subnetIds"] == [f"network-private-{i}-id" for i in range(3)]
        assert endpoint["securityGroupIds"] == ["network-endpoints-id"]
    group = aws_run.one("aws:ec2/securityGroup:SecurityGroup", "network-endpoints").inputs
    assert group["ingress"] == [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.40.0.0/16"]}]


# --- the cluster ----------------------------------------------------------------------------------


def test_cluster_private_endpoint_public_only_for_listed_cidrs(aws_run: ProgramRun) -> None:
    cluster = aws_run.one(CLUSTER_TYPE).inputs
    assert cluster["name"] == CLUSTER
    assert cluster["version"] == "1.32"
    assert cluster["vpcConfig"] == {
        "subnetIds": [f"network-private-{i}-id" for i in range(3)],
        "endpointPrivateAccess": True,
        "endpointPublicAccess": True,
        "publicAccessCidrs": ["198.51.100.0/24"],
    }
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert cluster["deletionProtection"] is True  # environment: prod
    assert cluster["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True}


def test_cluster_without_public_cidrs_is_private_only() -> None:
    assert vpc_config(["subnet-a"], []) == {
        "subnet_ids": ["subnet-a"],
        "endpoint_private_access": True,
        "endpoint_public_access": False,
    }
    run = run_program(AWS_STACK, overrides={"aws": eks_section(endpointPublicAccessCidrs=[])})
    config = run.one(CLUSTER_TYPE).inputs["vpcConfig"]
    assert config["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in config


@pytest.mark.parametrize("path", [AWS_STACK, EKS_FIXTURE], ids=lambda p: p.name)
def test_cluster_endpoint_never_open_to_the_internet(path: Any) -> None:
    for cluster in run_program(path).of_type(CLUSTER_TYPE):
        cidrs = cluster.inputs["vpcConfig"].get("publicAccessCidrs", [])
        assert "0.0.0.0/0" not in cidrs
        assert all(not c.endswith("/0") for c in cidrs)


def test_secrets_encrypted_with_a_key_the_stack_creates(aws_run: ProgramRun) -> None:
    key = aws_run.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    assert aws_run.one(CLUSTER_TYPE).inputs["encryptionConfig"] == {
        "provider": {"keyArn": f"arn:aws:kms:mock:{MOCK_ACCOUNT}:key/eks-secrets-key"},
        "resources": ["secrets"],
    }


def test_secrets_encrypted_with_the_configured_key_and_none_created() -> None:
    given = "arn:aws:kms:eu-west-1:123456789012:key/ffffffff-12ab-34cd-56ef-1234567890ab"
    run = run_program(AWS_STACK, overrides={"aws": aws_section(kmsKeyArn=given)})
    assert run.of_type("aws:kms/key:Key") == []
    assert run.one(CLUSTER_TYPE).inputs["encryptionConfig"]["provider"] == {"keyArn": given}


def test_cluster_role_and_oidc_provider(aws_run: ProgramRun) -> None:
    role = aws_run.one(ROLE, "eks-role")
    assert json.loads(role.inputs["assumeRolePolicy"]) == {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    attachment = aws_run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "eks-role-AmazonEKSClusterPolicy")
    assert attachment.inputs["policyArn"] == "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
    assert aws_run.one(CLUSTER_TYPE).inputs["roleArn"] == f"arn:aws:iam::{MOCK_ACCOUNT}:role/eks-role"
    oidc = aws_run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert oidc["url"] == f"https://{ISSUER}"
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]


def test_kubeconfig_is_a_pure_function_without_credentials() -> None:
    text = kubeconfig(cluster="c", endpoint="https://e", ca_data="Q0E=", region="us-east-1")
    assert text == kubeconfig(cluster="c", endpoint="https://e", ca_data="Q0E=", region="us-east-1")
    document = json.loads(text)
    assert document["current-context"] == "c"
    assert "token" not in document["users"][0]["user"]
    assert "client-key-data" not in text


# --- node groups ----------------------------------------------------------------------------------


def test_node_role_has_exactly_the_node_policies(aws_run: ProgramRun) -> None:
    role = aws_run.one(ROLE, "node-groups-role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    attached = [
        r.inputs["policyArn"]
        for r in aws_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.name.startswith("node-groups-role-")
    ]
    assert sorted(attached) == sorted(NODE_POLICIES)
    assert not [r for r in aws_run.of_type(POLICY) if r.inputs["role"] == "node-groups-role-id"]


def test_node_groups_from_config() -> None:
    groups = by_name(run_program(EKS_FIXTURE), NODE_GROUP)
    assert sorted(groups) == ["node-groups-compute", "node-groups-gpu", "node-groups-system"]
    system, compute, gpu = (groups[f"node-groups-{n}"] for n in ("system", "compute", "gpu"))
    assert system["capacityType"] == "ON_DEMAND"
    assert system["amiType"] == "AL2023_x86_64_STANDARD"
    assert system["scalingConfig"] == {"minSize": 2, "desiredSize": 3, "maxSize": 4}
    assert system.get("taints") in (None, [])
    assert system["labels"] == {"team": "platform", "qframe.io/node-pool": "system"}
    assert compute["capacityType"] == "SPOT"
    assert compute["instanceTypes"] == ["m6i.2xlarge", "m5.2xlarge"]
    assert compute["scalingConfig"] == {"minSize": 0, "desiredSize": 1, "maxSize": 20}
    assert compute["taints"] == [{"key": "qframe.io/compute", "value": "true", "effect": "NO_SCHEDULE"}]
    assert compute["labels"] == {"team": "research", "qframe.io/node-pool": "compute"}
    assert compute["diskSize"] == 100
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["capacityType"] == "ON_DEMAND"
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    # The label and taint the GPU notebook profiles and Ray GPU groups already select and tolerate.
    assert NotebookGpu().node_selector.items() <= gpu["labels"].items()
    assert RayGpu().node_selector.items() <= gpu["labels"].items()
    assert gpu["taints"][0]["key"] == NotebookGpu().toleration_key == RayGpu().toleration_key
    for group in groups.values():
        assert group["clusterName"] == f"{CLUSTER}-eks"
        assert group["subnetIds"] == [f"network-private-{i}-id" for i in range(3)]
        assert group["nodeRoleArn"] == f"arn:aws:iam::{MOCK_ACCOUNT}:role/node-groups-role"


def test_graviton_groups_get_the_arm_ami() -> None:
    groups = {**aws_section()["eks"]["nodeGroups"], "system": {"instanceTypes": ["m7g.large", "m6g.large"]}}
    run = run_program(AWS_STACK, overrides={"aws": eks_section(nodeGroups=groups)})
    assert by_name(run, NODE_GROUP)["node-groups-system"]["amiType"] == "AL2023_ARM_64_STANDARD"


# --- IRSA -----------------------------------------------------------------------------------------


def test_one_role_per_workload_bound_to_exactly_one_service_account(aws_run: ProgramRun) -> None:
    roles = {r.name: r for r in aws_run.of_type(ROLE) if r.name.startswith("irsa-")}
    assert sorted(roles) == ["irsa-dask-workers", "irsa-ingestion", "irsa-mlflow", "irsa-notebooks", "irsa-ray-workers"]
    # Users' servers run as Dask's dask-users (the stack deploys Dask): the notebooks role trusts it.
    accounts = {"irsa-notebooks": "dask-users"}
    for name, role in roles.items():
        service_account = accounts.get(name, name.removeprefix("irsa-"))
        assert json.loads(role.inputs["assumeRolePolicy"]) == {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": OIDC_ARN},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{ISSUER}:sub": f"system:serviceaccount:{NAMESPACE}:{service_account}",
                            f"{ISSUER}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    assert aws_run.outputs["irsa_role_arns"] == {
        name.removeprefix("irsa-"): f"arn:aws:iam::{MOCK_ACCOUNT}:role/{name}" for name in roles
    }


def _expected_permissions(bucket: str, prefix: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}"
    listing: dict[str, Any] = {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            listing,
            {"Sid": "Locate", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": arn},
            {"Sid": "Objects", "Effect": "Allow", "Action": OBJECT_ACTIONS, "Resource": f"{arn}/{prefix}*"},
            {
                "Sid": "BucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": BUCKET_KEY,
            },
        ],
    }


def test_each_workload_policy_is_exact(aws_run: ProgramRun) -> None:
    # The cluster-autoscaler's policy is asserted in test_aws_cluster_autoscaler.py.
    policies = {r.name: r.inputs for r in aws_run.of_type(POLICY) if r.name.startswith("irsa-")}
    expected = {
        "irsa-ingestion-s3": _expected_permissions(LAKE, "datasets/"),
        "irsa-mlflow-s3": _expected_permissions(ARTIFACTS, ""),
        "irsa-notebooks-s3": _expected_permissions(LAKE, ""),
        "irsa-dask-workers-s3": _expected_permissions(LAKE, ""),
        "irsa-ray-workers-s3": _expected_permissions(LAKE, ""),
    }
    assert {name: json.loads(p["policy"]) for name, p in policies.items()} == expected
    for name, inputs in policies.items():
        assert inputs["role"] == f"{name.removesuffix('-s3')}-id"


def test_workload_policy_without_a_bucket_key_has_no_kms_statement() -> None:
    access = WorkloadAccess("mlflow", "mlflow", "b", "")
    document = permission_policy(access, region="eu-west-1", kms_key_arn=None)
    assert [s["Sid"] for s in document["Statement"]] == ["List", "Locate", "Objects"]


def test_trust_policy_names_one_service_account() -> None:
    document = trust_policy(provider_arn="arn:p", issuer="i", namespace="ns", service_account="sa")
    [statement] = document["Statement"]
    assert statement["Condition"]["StringEquals"]["i:sub"] == "system:serviceaccount:ns:sa"
    assert "StringLike" not in statement["Condition"]


def test_roles_only_for_deployed_workloads_and_only_on_s3_stacks() -> None:
    fewer = run_program(AWS_STACK, overrides={"dask": {"enabled": False}, "mlflow": {"enabled": False}})
    names = sorted(r.name for r in fewer.of_type(ROLE) if r.name.startswith("irsa-"))
    assert names == ["irsa-ingestion", "irsa-notebooks", "irsa-ray-workers"]
    minio = run_program(AWS_STACK, overrides={"objectStore": {"kind": "minio"}, "postgres": {"kind": "in-cluster"}})
    assert minio.of_type(CLUSTER_TYPE)
    assert not [r for r in minio.of_type(ROLE) if r.name.startswith("irsa-")]
    assert "irsa_role_arns" not in minio.outputs


@pytest.mark.parametrize("path", [AWS_STACK, EKS_FIXTURE], ids=lambda p: p.name)
def test_no_iam_document_grants_a_wildcard_action_or_resource(path: Any) -> None:
    documents = policy_documents(run_program(path))
    assert len(documents) >= 8
    for name, document in documents.items():
        for statement in document["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                assert action != "*", name
                assert not action.endswith(":*"), f"{name}: {action}"
            if name == "cluster-autoscaler-policy.policy" and statement.get("Sid") == "Discover":
                # The one documented exception: Describe calls take no resource ARNs.
                assert statement["Resource"] == "*"
                assert actions == list(DESCRIBE_ACTIONS), actions
                continue
            resources = statement.get("Resource", [])
            for resource in resources if isinstance(resources, list) else [resources]:
                assert resource != "*", name
                if resource.startswith("arn:aws:autoscaling:"):
                    # An Auto Scaling group by name: its id, the middle part, is unknown until created.
                    head, _, group = resource.rpartition(":autoScalingGroupName/")
                    assert head.endswith(":autoScalingGroup:*"), f"{name}: {resource}"
                    assert group, f"{name}: {resource}"
                    assert "*" not in group, f"{name}: {resource}"
                    continue
                if "*" in resource:
                    # Object ARNs end in "<bucket>/<prefix>*"; no other wildcard is allowed.
                    assert resource.startswith("arn:aws:s3:::"), f"{name}: {resource}"
                    bucket, slash, _prefix = resource.removeprefix("arn:aws:s3:::").partition("/")
                    assert slash, f"{name}: {resource}"
                    assert "*" not in bucket, f"{name}: {resource}"
                    assert resource.count("*") == 1, f"{name}: {resource}"
                    assert resource.endswith("*"), f"{name}: {resource}"
            assert "NotAction" not in statement, name
            assert "NotResource" not in statement, name
            assert statement.get("Principal") not in ("*", {"AWS": "*"}), name


# --- ECR ------------------------------------------------------------------------------------------


def test_repositories_for_exactly_the_deployed_images(aws_run: ProgramRun) -> None:
    cfg = parse_raw_config(load_stack_file(AWS_STACK), stack="aws")
    images = deployed_images(cfg)
    # postgres: the RDS init Job runs the postgres image's python3 + psycopg.
    assert images == [
        "postgres",
        "kafka",
        "tools",
        "mlflow",
        "hub",
        "notebook",
        "worker",
        "dask_operator",
        "kuberay_operator",
    ]
    repositories = by_name(aws_run, REPOSITORY)
    # The cluster-autoscaler is mirrored, not built, but is pulled from the same registry.
    assert sorted(r["name"] for r in repositories.values()) == sorted(
        [f"qframe/{image.replace('_', '-')}" for image in images] + ["qframe/cluster-autoscaler"]
    )
    for inputs in repositories.values():
        assert inputs["imageTagMutability"] == "IMMUTABLE"
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert inputs["forceDelete"] is False
    for policy in aws_run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy"):
        assert json.loads(policy.inputs["policy"]) == lifecycle_policy(30)
    assert lifecycle_policy(5)["rules"][0]["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": 5,
    }


def test_repository_names_follow_the_registry_prefix() -> None:
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert repository_names(f"{registry}/team/qframe", ["dask_operator"]) == ["team/qframe/dask-operator"]
    assert repository_names(registry, ["kafka"]) == ["kafka"]


def test_deployed_images_follow_the_components() -> None:
    cfg = StackConfig.model_validate({"dask": {"installOperator": False}, "jupyterhub": {"enabled": False}})
    assert deployed_images(cfg) == ["minio", "postgres", "kafka", "tools", "mlflow", "worker", "kuberay_operator"]


# --- placement on the compute nodes -----------------------------------------------------------------


def _tolerating(run: ProgramRun, key: str) -> list[str]:
    """``<resource>:<path>`` of every pod spec in the run that tolerates the taint ``key``."""
    found: list[str] = []

    def walk(node: Any, path: str, resource: str) -> None:
        if isinstance(node, dict):
            tolerations = node.get("tolerations")
            if isinstance(tolerations, list) and any(t.get("key") == key for t in tolerations):
                found.append(f"{resource}:{path}")
            for child_key, value in node.items():
                walk(value, f"{path}.{child_key}", resource)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]", resource)

    for resource in run.resources:
        if resource.type.startswith("kubernetes:"):
            walk(resource.inputs, "", resource.name)
    return sorted(found)


def test_only_dask_and_ray_workers_tolerate_the_compute_taint(aws_run: ProgramRun) -> None:
    assert _tolerating(aws_run, "qframe.io/compute") == [
        "dask-cluster:.spec.worker.spec",
        "ray-cluster:.spec.workerGroupSpecs[0].template.spec",
    ]
    worker = aws_run.one("kubernetes:kubernetes.dask.org/v1:DaskCluster").inputs["spec"]["worker"]["spec"]
    [preference] = worker["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preference["preference"] == {
        "matchExpressions": [{"key": "qframe.io/node-pool", "operator": "In", "values": ["compute"]}]
    }
    assert worker["tolerations"] == [
        {"key": "qframe.io/compute", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]


def test_gpu_ray_groups_go_to_gpu_nodes_not_compute_nodes() -> None:
    groups = [
        {"name": "cpu", "minReplicas": 0, "maxReplicas": 2},
        {"name": "gpu", "minReplicas": 0, "maxReplicas": 1, "gpu": {"count": 1}},
    ]
    run = run_program(EKS_FIXTURE, overrides={"ray": {"workerGroups": groups}})
    spec = run.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    gpu_group = spec["workerGroupSpecs"][1]["template"]["spec"]
    assert [t["key"] for t in gpu_group["tolerations"]] == ["nvidia.com/gpu"]
    assert "affinity" not in gpu_group


def test_off_eks_nothing_tolerates_the_compute_taint() -> None:
    for path in (REPO_ROOT / "Pulumi.dev.yaml", REPO_ROOT / "tests" / "fixtures" / "stacks" / "aws.happy.yaml"):
        assert _tolerating(run_program(path), "qframe.io/compute") == []


# --- workers run as their IRSA service accounts -------------------------------------------------------


def test_irsa_service_accounts_carry_their_role(aws_run: ProgramRun) -> None:
    accounts = {
        r.inputs["metadata"]["name"]: r.inputs
        for r in aws_run.of_type("kubernetes:core/v1:ServiceAccount")
        if r.name.startswith("irsa-")
    }
    assert sorted(accounts) == ["dask-workers", "ray-workers"]
    for name, account in accounts.items():
        assert account["metadata"]["namespace"] == NAMESPACE
        assert account["metadata"]["annotations"] == {
            "eks.amazonaws.com/role-arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/irsa-{name}"
        }
        assert account["automountServiceAccountToken"] is False
        assert account["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pulumi"


def _trust_subjects(run: ProgramRun) -> dict[str, str]:
    """Role name -> the one ``system:serviceaccount:<ns>:<sa>`` its trust policy admits."""
    subjects = {}
    for role in run.of_type(ROLE):
        if role.name.startswith("irsa-"):
            [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
            assert list(statement["Condition"]) == ["StringEquals"]
            assert set(statement["Condition"]["StringEquals"]) == {f"{ISSUER}:sub", f"{ISSUER}:aud"}
            subjects[role.name] = statement["Condition"]["StringEquals"][f"{ISSUER}:sub"]
    return subjects


def _hub_singleuser(run: ProgramRun) -> dict[str, Any]:
    release = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "jupyterhub")
    return dict(release.inputs["values"]["singleuser"])


def test_user_servers_with_dask_run_as_dask_users_which_carries_the_notebooks_role(aws_run: ProgramRun) -> None:
    assert _trust_subjects(aws_run)["irsa-notebooks"] == f"system:serviceaccount:{NAMESPACE}:dask-users"
    # Every role admits exactly one account, and no two roles share one.
    subjects = list(_trust_subjects(aws_run).values())
    assert len(set(subjects)) == len(subjects)
    [users] = [
        r.inputs
        for r in aws_run.of_type("kubernetes:core/v1:ServiceAccount")
        if r.inputs["metadata"]["name"] == "dask-users"
    ]
    assert users["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/irsa-notebooks"
    }
    assert users["automountServiceAccountToken"] is False
    # The same account keeps Dask's RBAC, and the hub spawns servers as it, with its API token.
    binding = next(
        r.inputs
        for r in aws_run.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
        if r.inputs["metadata"]["name"] == "dask-users"
    )
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dask-users", "namespace": NAMESPACE}]
    singleuser = _hub_singleuser(aws_run)
    assert singleuser["serviceAccount"] == "dask-users"
    assert singleuser["serviceAccountPurpose"]
    # No second account for the notebooks: one pod has one account.
    names = [r.inputs["metadata"]["name"] for r in aws_run.of_type("kubernetes:core/v1:ServiceAccount")]
    assert "notebooks" not in names


def test_user_servers_without_dask_run_as_the_notebooks_irsa_account_without_api_access() -> None:
    run = run_program(AWS_STACK, overrides={"dask": {"enabled": False}})
    assert _trust_subjects(run)["irsa-notebooks"] == f"system:serviceaccount:{NAMESPACE}:notebooks"
    [account] = [
        r.inputs
        for r in run.of_type("kubernetes:core/v1:ServiceAccount")
        if r.inputs["metadata"]["name"] == "notebooks"
    ]
    assert account["metadata"]["namespace"] == NAMESPACE
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/irsa-notebooks"
    }
    assert account["automountServiceAccountToken"] is False
    singleuser = _hub_singleuser(run)
    # An account for its IAM role only: no purpose, so the chart mounts no API token and keeps the
    # API server closed to the servers.
    assert (singleuser["serviceAccount"], singleuser["serviceAccountPurpose"]) == ("notebooks", "")
    names = [r.inputs["metadata"]["name"] for r in run.of_type("kubernetes:core/v1:ServiceAccount")]
    assert "dask-users" not in names


def test_user_servers_off_eks_or_on_minio_get_no_account_without_dask() -> None:
    minio = run_program(
        AWS_STACK,
        overrides={"objectStore": {"kind": "minio"}, "postgres": {"kind": "in-cluster"}, "dask": {"enabled": False}},
    )
    assert _hub_singleuser(minio)["serviceAccount"] == ""


def test_workers_run_as_their_irsa_accounts(aws_run: ProgramRun) -> None:
    dask_spec = aws_run.one("kubernetes:kubernetes.dask.org/v1:DaskCluster").inputs["spec"]
    assert dask_spec["worker"]["spec"]["serviceAccountName"] == "dask-workers"
    assert "serviceAccountName" not in dask_spec["scheduler"]["spec"]
    ray_spec = aws_run.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    for group in ray_spec["workerGroupSpecs"]:
        assert group["template"]["spec"]["serviceAccountName"] == "ray-workers"
        assert group["template"]["spec"]["automountServiceAccountToken"] is False
    # The clusters wait for the accounts their pods name.
    accounts = {r.urn for r in aws_run.of_type("kubernetes:core/v1:ServiceAccount") if r.name.startswith("irsa-")}
    for component in ("kubernetes:kubernetes.dask.org/v1:DaskCluster", "kubernetes:ray.io/v1:RayCluster"):
        assert accounts <= set(aws_run.one(component).depends_on), component


def test_worker_specs_with_placement_and_identity_match_the_crds_and_security_rules() -> None:
    platform = ComputePlatform(
        namespace=NAMESPACE,
        lake_bucket=LAKE,
        object_store_endpoint=None,
        mlflow=True,
        postgres_in_cluster=False,
        compute_nodes=True,
        workload_identity=True,
    )
    scope = Scope(namespace=NAMESPACE)
    worker = image_ref(StackConfig().images, "worker")
    for cluster in (
        dask.build_cluster(scope, DaskSettings(), worker, platform),
        ray.build_cluster(scope, RaySettings(), worker, platform),
    ):
        assert cr_schema_errors(cluster) == []
        assert [v for pod in pods_as_workloads(cluster) for v in violations(pod)] == []


def test_no_worker_identity_without_s3_or_off_eks() -> None:
    minio = run_program(AWS_STACK, overrides={"objectStore": {"kind": "minio"}, "postgres": {"kind": "in-cluster"}})
    plain = run_program(REPO_ROOT / "tests" / "fixtures" / "stacks" / "aws.happy.yaml")
    for run in (minio, plain):
        spec = run.one("kubernetes:kubernetes.dask.org/v1:DaskCluster").inputs["spec"]
        assert "serviceAccountName" not in spec["worker"]["spec"]
        assert not [r for r in run.of_type("kubernetes:core/v1:ServiceAccount") if r.name.startswith("irsa-")]


# --- KMS aliases -----------------------------------------------------------------------------------


def test_kms_alias_shapes() -> None:
    assert alias_name("alias/qframe") == "alias/qframe"
    assert alias_name("arn:aws:kms:eu-west-1:123456789012:alias/team/qframe") == "alias/team/qframe"
    assert alias_name(BUCKET_KEY) is None


def test_kms_aliases_are_resolved_to_key_arns_before_any_iam_document() -> None:
    store = json.loads(load_stack_file(AWS_STACK)["qframe-research:objectStore"])
    lake_alias = "arn:aws:kms:eu-west-1:123456789012:alias/qframe-lake"
    store["s3"]["kmsKeyArn"] = lake_alias
    run = run_program(AWS_STACK, overrides={"aws": aws_section(kmsKeyArn="alias/qframe-eks"), "objectStore": store})
    # The mocked aws.kms.get_alias invoke answers with the alias's target key.
    lake_key, eks_key = mock_alias_key_arn("alias/qframe-lake"), mock_alias_key_arn("alias/qframe-eks")
    assert run.one(CLUSTER_TYPE).inputs["encryptionConfig"]["provider"] == {"keyArn": eks_key}
    assert run.of_type("aws:kms/key:Key") == []
    documents = policy_documents(run)
    kms_resources = {
        name: statement["Resource"]
        for name, document in documents.items()
        for statement in document["Statement"]
        if any(str(action).startswith("kms:") for action in _as_list(statement["Action"]))
    }
    # Every IRSA role and the S3 workload policy name the key itself, never the alias.
    assert kms_resources == {
        **{
            f"irsa-{w}-s3.policy": lake_key for w in ("ingestion", "mlflow", "notebooks", "dask-workers", "ray-workers")
        },
        "object-store-workloads.policy": [lake_key],
    }
    assert "alias/" not in json.dumps(documents)
    for encryption in run.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ):
        default = encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": lake_key}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- RDS in the stack's VPC -------------------------------------------------------------------------


def test_rds_in_the_stack_vpc_reachable_only_from_the_cluster_security_group(aws_run: ProgramRun) -> None:
    group = aws_run.one("aws:rds/subnetGroup:SubnetGroup").inputs
    assert group["subnetIds"] == [f"network-private-{i}-id" for i in range(3)]
    rds_sg = aws_run.one("aws:ec2/securityGroup:SecurityGroup", "postgres-sg").inputs
    assert rds_sg["vpcId"] == "network-vpc-id"
    assert rds_sg["ingress"] == [
        {
            "protocol": "tcp",
            "fromPort": 5432,
            "toPort": 5432,
            "securityGroups": ["sg-mock-eks-cluster-cluster"],
            "description": "PostgreSQL from the EKS cluster security group",
        }
    ]
    assert rds_sg["egress"] == []
    instance = aws_run.one("aws:rds/instance:Instance").inputs
    assert instance["vpcSecurityGroupIds"] == ["postgres-sg-id"]
    assert instance["publiclyAccessible"] is False
    # The init Job may open 5432 on the private subnets and nothing else.
    policy = aws_run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "postgres-init-databases-egress").inputs
    cidrs = [zone.private for zone in subnet_plan("10.40.0.0/16", 3)]
    assert policy["spec"]["egress"] == [
        {"ports": [{"protocol": "TCP", "port": 5432}], "to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]}
    ]
