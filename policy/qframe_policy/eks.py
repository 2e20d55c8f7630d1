"""EKS: the public API endpoint is either off or open only to listed networks (never to everyone).

AWS turns the public endpoint on when ``endpointPublicAccess`` is absent and opens it to 0.0.0.0/0
when ``publicAccessCidrs`` is absent or empty, so both count as open.
"""

from __future__ import annotations

from .model import Context, Resource, as_list, as_map

CLUSTER = "aws:eks/cluster:Cluster"
TYPES = frozenset({CLUSTER})
OPEN = ("0.0.0.0/0", "::/0")


def check_endpoint_not_open(resource: Resource, context: Context) -> list[str]:
    vpc = as_map(resource.props.get("vpcConfig"))
    if vpc.get("endpointPublicAccess") is False:
        return []
    where = f"EKS cluster '{resource.name}'"
    fix = (
        "set vpc_config.endpoint_public_access=False, or public_access_cidrs to the admin networks "
        "(qframe-research:aws.eks.endpointPublicAccessCidrs)"
    )
    cidrs = [str(c) for c in as_list(vpc.get("publicAccessCidrs"))]
    if not cidrs:
        return [f"{where}: the public endpoint is on without publicAccessCidrs (AWS opens it to 0.0.0.0/0); {fix}"]
    open_cidrs = [c for c in cidrs if c.strip() in OPEN or c.strip().endswith("/0")]
    if open_cidrs:
        return [f"{where}: publicAccessCidrs {open_cidrs} opens the public endpoint to everyone; {fix}"]
    return []
