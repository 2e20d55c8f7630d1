"""The pinned tool versions from tools/versions.env, read without sourcing a shell.

tools/versions.env is the one place versions are pinned (tools/install, the Makefile and the tests all
read it), so tests ask this helper instead of repeating a version.
"""

from __future__ import annotations

import re
from pathlib import Path

VERSIONS_FILE = Path(__file__).resolve().parent / "versions.env"

# KEY=VALUE with an optional quoted value; blank lines and `#` comments are skipped.
_LINE = re.compile(r"""^(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>"[^"]*"|'[^']*'|[^\s#]*)""")


def parse_versions(text: str) -> dict[str, str]:
    """Parses versions.env text into {KEY: value}; raises ValueError naming a line it cannot read."""
    pinned: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"versions.env line {number} is not KEY=VALUE: {raw!r}")
        pinned[match["key"]] = match["value"].strip("\"'")
    return pinned


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Returns every pinned version in tools/versions.env, e.g. {"KUBE_VERSION": "1.34.2", ...}."""
    return parse_versions(path.read_text(encoding="utf-8"))
