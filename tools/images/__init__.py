"""The image builder: images/<name>/ recipes -> qframe/<name>:<content tag> + `docker save` archives.

`build(["pause", "coredns"])` is what the node calls; `python -m tools.images` is the CLI.
"""

from tools.images.builder import BuiltImage, build, plan

__all__ = ["BuiltImage", "build", "plan"]
