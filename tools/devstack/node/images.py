"""The images the node runs, from the image builder (tools.images, owned by the images work).

``build`` is cached: a second call returns in about a second without starting Docker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

NODE_IMAGES = ("pause", "coredns")


def stack_images() -> tuple[str, ...]:
    """The node's own images plus every image the stack deploys: the fields of the stack config's
    image tags (an image joins that list with the component that runs it)."""
    from infra.config import ImageTags  # noqa: PLC0415 - the infra program, only for `make up`

    # Field names are Python identifiers; image names (images/<name>) use hyphens (dask_operator ->
    # dask-operator), as infra.images.image_ref does.
    return (*NODE_IMAGES, *(field.replace("_", "-") for field in ImageTags.model_fields))


class ImagesError(RuntimeError):
    """The image builder failed or is unavailable; the message has its own words and the fix."""


@dataclass(frozen=True)
class NodeImage:
    name: str
    ref: str
    archive: Path
    size_bytes: int


def build_images(
    names: Sequence[str] | None, progress: Callable[[str, str, float], None] | None = None
) -> dict[str, NodeImage]:
    """{name: image} for ``names`` (None: every recipe in images/), building what is missing;
    ``progress(name, "cached" | "building" | "built", seconds)`` follows each image."""
    try:
        # Imported here: the builder pulls in its recipes and Docker helpers, which `make down` and
        # the unit tier never need.
        from tools.images import build  # noqa: PLC0415
    except ImportError as exc:
        raise ImagesError(f"the image builder tools.images is not importable: {exc}") from None
    try:
        built = build(list(names) if names is not None else None, progress=progress)
    except Exception as exc:  # the builder's own errors carry their fix; keep its words
        raise ImagesError(
            f"building the images failed: {exc}\n  retry alone with: .venv/bin/python -m tools.images build"
        ) from None
    return {name: NodeImage(name, b.ref, Path(b.archive), int(b.size_bytes)) for name, b in built.items()}
