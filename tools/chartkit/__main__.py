"""`python -m tools.chartkit [--check]`: regenerate (or only check) the charts' shared copies,
schema $defs and README values tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .generate import stale_files, write_files
from .layout import REGENERATE_COMMAND, Layout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE_COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    tree = Layout()
    if args.check:
        stale = stale_files(tree)
        for path in stale:
            print(f"out of date: {path.relative_to(tree.root)}", file=sys.stderr)
        if stale:
            print(f"run `{REGENERATE_COMMAND}` to regenerate them", file=sys.stderr)
        return 1 if stale else 0
    for path in write_files(tree):
        print(f"wrote {path.relative_to(tree.root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
