"""Image references for the charts, built one way from the stack's ``images`` section.

Every chart takes the same image block (charts/README.md): ``repository``, ``tag``, ``digest``
and ``pullPolicy``. A digest pins the image by content and wins over the tag, so a stack that pins
by digest passes an empty tag rather than a made-up one.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import Images


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
