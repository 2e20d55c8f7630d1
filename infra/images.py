"""Image references for the charts, built one way from the stack's ``images`` section.

Every chart takes the same image block (charts/README.md): ``repository``, ``tag``, ``digest``
and ``pullPolicy``. A digest pins the image by content and wins over the tag, so a stack that pins
by digest passes an empty tag rather than a made-up one.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import Images, StackConfig


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str
    digest: str
    pull_policy: str

    @property
    def reference(self) -> str:
        """What a container's ``image`` field would say."""
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"

    def chart_values(self) -> dict[str, str]:
        """The image block every chart of this repository accepts."""
        return {"repository": self.repository, "tag": self.tag, "digest": self.digest, "pullPolicy": self.pull_policy}


def image_ref(images: Images, name: str) -> ImageRef:
    """The reference of one image of ``images.tags`` (field name, e.g. ``tools``)."""
    pinned: str = getattr(images.tags, name)
    by_digest = pinned.startswith("sha256:")
    return ImageRef(
        repository=f"{images.registry}/{name.replace('_', '-')}",
        tag="" if by_digest else pinned,
        digest=pinned if by_digest else "",
        pull_policy=images.pull_policy,
    )


def deployed_images(cfg: StackConfig) -> list[str]:
    """The images (``images.tags`` field names) of the components this stack deploys, in field order."""
    used = {
        "minio": cfg.object_store.kind == "minio",
        # The server in-cluster; on RDS the init Job (python3 + psycopg) that makes the consumers' logins.
        "postgres": True,
        "kafka": True,
        # Init containers of MinIO and Kafka (bucket and topic bootstrap).
        "tools": True,
        "mlflow": cfg.mlflow.enabled,
        "hub": cfg.jupyterhub.enabled,
        "notebook": cfg.jupyterhub.enabled,
        "worker": cfg.dask.enabled or cfg.ray.enabled,
        "dask_operator": cfg.dask.enabled and cfg.dask.install_operator,
        "kuberay_operator": cfg.ray.enabled and cfg.ray.install_operator,
    }
    missing = set(type(cfg.images.tags).model_fields) - set(used)
    if missing:
        raise ValueError(f"deployed_images does not know whether the stack runs {sorted(missing)}")
    return [name for name in type(cfg.images.tags).model_fields if used.get(name)]
