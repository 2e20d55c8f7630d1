"""The VPC of an EKS stack: private subnets for nodes (and databases), public ones for load balancers.

Subnets are carved from the configured CIDR by a pure function: the VPC is split into eight equal
blocks; zone ``i`` gets private block ``i`` (room for the VPC CNI's one address per pod) and a
public subnet from the last block (load balancers and NAT gateways need few addresses). Private
route tables send the internet through a NAT gateway (one per zone or one for all, from config),
and S3 plus ECR are reached through VPC endpoints, so image pulls and data-lake traffic stay off
the NAT.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.aws import invoke_parent
from infra.config import NetworkSettings

# Subnet tags the AWS load balancer controller and EKS use to find where load balancers go.
PUBLIC_ELB_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_TAG = "kubernetes.io/role/internal-elb"
# ECR needs both interface endpoints (API and registry); layers come from S3 via the gateway.
ECR_ENDPOINTS: tuple[str, ...] = ("ecr.api", "ecr.dkr")
HTTPS = 443


@dataclass(frozen=True)
class ZoneSubnets:
    private: str
    public: str


def subnet_plan(cidr: str, az_count: int) -> list[ZoneSubnets]:
    """The private and public CIDR of each zone (see the module docstring)."""
    vpc = ipaddress.IPv4Network(cidr, strict=True)
    blocks = list(vpc.subnets(prefixlen_diff=3))
    if az_count > len(blocks) - 2:
        raise ValueError(f"{cidr} leaves room for at most {len(blocks) - 2} zones, not {az_count}")
    public = list(blocks[-1].subnets(prefixlen_diff=3))
    return [ZoneSubnets(private=str(blocks[i]), public=str(public[i])) for i in range(az_count)]


def cluster_tag(cluster: str) -> str:
    return f"kubernetes.io/cluster/{cluster}"


def subnet_tags(cluster: str, *, public: bool) -> dict[str, str]:
    return {cluster_tag(cluster): "shared", (PUBLIC_ELB_TAG if public else INTERNAL_ELB_TAG): "1"}


def nat_zones(mode: str, az_count: int) -> list[int]:
    """The zones that get a NAT gateway: each, or the first only."""
    return list(range(az_count)) if mode == "perAz" else [0]


@dataclass
class NetworkArgs:
    settings: NetworkSettings
    cluster_name: str
    region: str
    tags: Mapping[str, str]


class Network(pulumi.ComponentResource):
    """VPC, subnets across zones, IGW, NAT gateways, route tables and the S3/ECR endpoints."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:aws:Network", name, None, opts)
        settings = args.settings
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        plan = subnet_plan(settings.cidr, settings.az_count)

        zones = aws.get_availability_zones_output(state="available", opts=invoke_parent(self))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=settings.cidr,
            # Both are needed for the private API endpoint and the interface endpoints' DNS names.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={**tags, "Name": args.cluster_name},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": args.cluster_name}, opts=child
        )
        public_ids: list[pulumi.Output[str]] = []
        private_ids: list[pulumi.Output[str]] = []
        for index, zone_plan in enumerate(plan):
            zone = zones.names.apply(functools.partial(_zone, index=index))
            public_ids.append(
                aws.ec2.Subnet(
                    f"{name}-public-{index}",
                    vpc_id=vpc.id,
                    cidr_block=zone_plan.public,
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={**tags, **subnet_tags(args.cluster_name, public=True), "Name": f"public-{index}"},
                    opts=child,
                ).id
            )
            private_ids.append(
                aws.ec2.Subnet(
                    f"{name}-private-{index}",
                    vpc_id=vpc.id,
                    cidr_block=zone_plan.private,
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={**tags, **subnet_tags(args.cluster_name, public=False), "Name": f"private-{index}"},
                    opts=child,
                ).id
            )

        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={**tags, "Name": "public"},
            opts=child,
        )
        for index, subnet_id in enumerate(public_ids):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}", subnet_id=subnet_id, route_table_id=public_routes.id, opts=child
            )

        nat_ids: dict[int, pulumi.Output[str]] = {}
        for index in nat_zones(settings.nat_gateways, settings.az_count):
            eip = aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc", tags={**tags, "Name": f"nat-{index}"}, opts=child)
            nat_ids[index] = aws.ec2.NatGateway(
                f"{name}-nat-{index}",
                allocation_id=eip.id,
                subnet_id=public_ids[index],
                tags={**tags, "Name": f"nat-{index}"},
                # A NAT gateway answers only once the VPC has its internet gateway attached.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            ).id
        private_route_ids: list[pulumi.Output[str]] = []
        for index, subnet_id in enumerate(private_ids):
            nat = nat_ids.get(index, nat_ids[0])
            table = aws.ec2.RouteTable(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat}],
                tags={**tags, "Name": f"private-{index}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}", subnet_id=subnet_id, route_table_id=table.id, opts=child
            )
            private_route_ids.append(table.id)

        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=private_route_ids,
            tags={**tags, "Name": "s3"},
            opts=child,
        )
        endpoints_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            description="HTTPS from inside the VPC to its interface endpoints",
            vpc_id=vpc.id,
            ingress=[{"protocol": "tcp", "from_port": HTTPS, "to_port": HTTPS, "cidr_blocks": [settings.cidr]}],
            tags={**tags, "Name": "vpc-endpoints"},
            opts=child,
        )
        for service in ECR_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                subnet_ids=private_ids,
                security_group_ids=[endpoints_sg.id],
                private_dns_enabled=True,
                tags={**tags, "Name": service},
                opts=child,
            )

        self.vpc_id = vpc.id
        self.private_subnet_ids = private_ids
        self.public_subnet_ids = public_ids
        self.register_outputs({"vpc_id": vpc.id, "private_subnet_ids": private_ids, "public_subnet_ids": public_ids})


def _zone(names: list[str] | None, index: int) -> str:
    if not names or len(names) <= index:
        raise ValueError(
            f"the region has {len(names or [])} available zones, but aws.network.azCount needs {index + 1}; "
            "lower azCount"
        )
    return names[index]
