"""ECR repositories for the images the stack deploys: immutable tags, scanned on push, pruned.

Repository names follow ``images.registry`` (the config model requires this region's ECR there
when ``aws.ecr`` is set): with ``<account>.dkr.ecr.<region>.amazonaws.com/qframe`` the ``kafka``
image lives in the repository ``qframe/kafka``, exactly where the workloads pull it from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


def repository_names(registry: str, images: Sequence[str]) -> list[str]:
    """``<prefix>/<image>`` per image (field names such as ``dask_operator`` become ``dask-operator``)."""
    _host, _slash, prefix = registry.partition("/")
    names = [image.replace("_", "-") for image in images]
    return [f"{prefix}/{name}" if prefix else name for name in names]


def lifecycle_policy(keep_last: int) -> dict[str, Any]:
    """Expire all but the newest ``keep_last`` images (tagged or not)."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep the last {keep_last} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_last},
                "action": {"type": "expire"},
            }
        ]
    }


@dataclass
class EcrArgs:
    repositories: Sequence[str]
    keep_last: int
    tags: Mapping[str, str]


class Ecr(pulumi.ComponentResource):
    """A repository and its lifecycle policy per image; ``repository_urls`` maps name -> URL."""

    repository_urls: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: EcrArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:aws:Ecr", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        urls: dict[str, pulumi.Output[str]] = {}
        for repository in args.repositories:
            resource_name = f"{name}-{repository.replace('/', '-')}"
            repo = aws.ecr.Repository(
                resource_name,
                name=repository,
                # A tag names one image forever: the content tags of infra/image_tags.py rely on it.
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "AES256"}],
                force_delete=False,
                tags=dict(args.tags),
                opts=child,
            )
            aws.ecr.LifecyclePolicy(
                f"{resource_name}-lifecycle",
                repository=repo.name,
                policy=json.dumps(lifecycle_policy(args.keep_last)),
                opts=child,
            )
            urls[repository] = repo.repository_url
        self.repository_urls = pulumi.Output.all(**urls) if urls else pulumi.Output.from_input({})
        self.register_outputs({"repository_urls": self.repository_urls})
